"""Steps that start a background load against the API."""

from behave import given, then, when


@given("a steady load of {rate:Number} requests per second")
def step_steady_load(context, rate):
    context.chaos.start_load(context.chaos.open_load(rate))


@given("{level:Level} load")
def step_named_load(context, level):
    context.chaos.start_load(context.chaos.open_load(context.chaos.settings.load_rate(level)))


@given("{n:Count} concurrent users")
def step_concurrent_users(context, n):
    context.chaos.start_load(context.chaos.closed_load(n))


@given("{n:Number}% of the load is malformed")
def step_malformed_share(context, n):
    context.chaos.set_malformed(n)


@when("the load runs for {seconds:Duration}")
def step_load_runs_for(context, seconds):
    context.chaos.let_load_run(seconds)


@then("every malformed request is refused with a 4xx")
def step_malformed_refused(context):
    context.chaos.check_malformed_refused()


@then("the well-formed requests keep an error rate below {percent:Number}%")
def step_well_formed_error_rate(context, percent):
    context.chaos.check_well_formed_error_rate_below(percent)


@then("the well-formed requests keep their latency")
def step_well_formed_latency(context):
    context.chaos.check_well_formed_latency_kept()
