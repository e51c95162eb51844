"""Steps that talk to the API directly: its health endpoint and single requests."""
from behave import then

from support.health import HEALTHY, UNREACHABLE, wait_for_health
from support.users import check_status, first_request


@then("the health endpoint reports the database as unreachable within {seconds:Duration}")
def step_health_unreachable(context, seconds):
    context.chaos.notes["health"] = wait_for_health(context.chaos.stack.api_url, UNREACHABLE, seconds).describe()


@then("the health endpoint reports healthy within {seconds:Duration}")
def step_health_healthy(context, seconds):
    context.chaos.notes["health"] = wait_for_health(context.chaos.stack.api_url, HEALTHY, seconds).describe()


@then("the next request succeeds")
def step_next_request_succeeds(context):
    context.chaos.response = first_request(context.chaos.stack.api_url)
    check_status(context.chaos.response, 200, "the first request after the fault")
