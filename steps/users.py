"""Steps about the records the scenario stores and expects to find again.

``{records}`` is the workload's noun (``records = "notes"`` in the stack file; "users" always
works): a wrong one is refused when the features are read, so the steps need not look at it.
"""

from behave import given, then, when


@given("{n:Count} {records:Records} exist")
def step_users_exist(context, n, records):
    context.chaos.create_users(n)


@then("the {n:Count} {records:Records} still exist")
def step_users_still_exist(context, n, records):
    context.chaos.check_users_intact(n)


@when("a user is created with an email that is already taken")
def step_duplicate_write(context):
    context.chaos.try_duplicate_write()


@then("the write is refused with {status:Count}")
def step_write_refused(context, status):
    context.chaos.check_write_refused(status)


@then("exactly {n:Count} {records:Records} are stored")
def step_exactly_stored(context, n, records):
    context.chaos.check_user_count(n)
