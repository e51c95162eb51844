"""Steps that break the database from the inside: locks and the like."""
from behave import when

from support.db_faults import TableLock


@when("the users table is locked for {seconds:Seconds} seconds")
def step_users_table_locked(context, seconds):
    context.chaos.hold(TableLock(context.chaos.stack.admin_dsn, "users"), seconds)
