"""Steps that talk to the API directly: its health endpoint and single requests."""

from behave import then


@then("the health endpoint reports the database as unreachable within {seconds:Duration}")
def step_health_unreachable(context, seconds):
    context.chaos.check_database_unreachable_within(seconds)


@then("the health endpoint reports healthy within {seconds:Duration}")
def step_health_healthy(context, seconds):
    context.chaos.check_healthy_within(seconds)


@then("the next request succeeds")
def step_next_request_succeeds(context):
    context.chaos.check_next_request_succeeds()
