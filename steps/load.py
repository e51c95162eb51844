"""Steps that start a background load against the API."""

from behave import given


@given("a steady load of {rate:Number} requests per second")
def step_steady_load(context, rate):
    context.chaos.start_load(context.chaos.open_load(rate))


@given("{level:Level} load")
def step_named_load(context, level):
    context.chaos.start_load(context.chaos.open_load(context.chaos.settings.load_rate(level)))


@given("{n:Count} concurrent users")
def step_concurrent_users(context, n):
    context.chaos.start_load(context.chaos.closed_load(n))
