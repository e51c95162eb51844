"""Steps about the records ("users" of the reference API) the scenario stores and expects to find again."""
from behave import given, then, when


@given("{n:Count} users exist")
def step_users_exist(context, n):
    context.chaos.create_users(n)


@then("the {n:Count} users still exist")
def step_users_still_exist(context, n):
    context.chaos.check_users_intact(n)


@when("a user is created with an email that is already taken")
def step_duplicate_write(context):
    context.chaos.try_duplicate_write()


@then("the write is refused with {status:Count}")
def step_write_refused(context, status):
    context.chaos.check_write_refused(status)


@then("exactly {n:Count} users are stored")
def step_exactly_stored(context, n):
    context.chaos.check_user_count(n)
