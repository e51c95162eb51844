"""Steps that talk to the API directly: its health endpoint and single requests."""
from behave import then

from support.checks.health import HEALTHY, UNREACHABLE, wait_for_health
from support.checks.records import check_next_read


@then("the health endpoint reports the database as unreachable within {seconds:Duration}")
def step_health_unreachable(context, seconds):
    context.chaos.notes["health"] = wait_for_health(context.chaos.stack.health_url, UNREACHABLE, seconds).describe()


@then("the health endpoint reports healthy within {seconds:Duration}")
def step_health_healthy(context, seconds):
    context.chaos.notes["health"] = wait_for_health(context.chaos.stack.health_url, HEALTHY, seconds).describe()


@then("the next request succeeds")
def step_next_request_succeeds(context):
    check_next_read(context.chaos.stack.api_url, context.chaos.stack.workload, context.chaos.users)
