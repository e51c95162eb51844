"""Steps about the records ("users" of the reference API) the scenario stores and expects to find again."""
from behave import given, then, when

from support.checks.records import check_status, check_user_count, check_users_intact, create_users, try_duplicate_write


@given("{n:Count} users exist")
def step_users_exist(context, n):
    context.chaos.users = create_users(context.chaos.stack.api_url, context.chaos.stack.workload, n)


@then("the {n:Count} users still exist")
def step_users_still_exist(context, n):
    stack = context.chaos.stack
    check_users_intact(stack.api_url, stack.admin_dsn, stack.workload, context.chaos.users[:n])


@when("a user is created with an email that is already taken")
def step_duplicate_write(context):
    context.chaos.response = try_duplicate_write(context.chaos.stack.api_url, context.chaos.stack.workload,
                                                 context.chaos.users)


@then("the write is refused with {status:Count}")
def step_write_refused(context, status):
    check_status(context.chaos.response, status, "the write")


@then("exactly {n:Count} users are stored")
def step_exactly_stored(context, n):
    check_user_count(context.chaos.stack.admin_dsn, context.chaos.stack.workload, n)
