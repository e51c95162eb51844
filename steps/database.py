"""Steps that break the database from the inside (sessions, slots, locks, read-only, slowness), and judge it."""
from behave import given, then, when

from support.faults.database import ReadOnlyDatabase, SlotExhaustion, SlowStatements, TableLock, TerminateBackends, api_role


@when("all database connections of the api are terminated")
def step_api_sessions_terminated(context):
    stack = context.chaos.stack
    context.chaos.inject(TerminateBackends(stack.admin_dsn, api_role(stack.app_dsn)))


@when("the users table is locked for {seconds:Duration}")
def step_users_table_locked(context, seconds):
    context.chaos.hold(TableLock(context.chaos.stack.admin_dsn, context.chaos.stack.workload.table), seconds)


@when("postgres runs out of connection slots for {seconds:Duration}")
def step_out_of_slots(context, seconds):
    stack = context.chaos.stack
    context.chaos.hold(SlotExhaustion(stack.admin_dsn, service_role=api_role(stack.app_dsn)), seconds)


@given("postgres has no connection slot left")
def step_no_slot_left(context):
    stack = context.chaos.stack
    context.chaos.inject(SlotExhaustion(stack.admin_dsn, service_role=api_role(stack.app_dsn)))  # healed at the end


@when("the database is read-only for {seconds:Duration}")
def step_read_only(context, seconds):
    context.chaos.hold(ReadOnlyDatabase(context.chaos.stack.admin_dsn), seconds)


@when("every statement of the api is slowed by {delay:Duration} for {seconds:Duration}")
def step_statements_slowed(context, delay, seconds):
    context.chaos.hold(SlowStatements(context.chaos.stack.admin_dsn, delay, context.chaos.stack.workload.table), seconds)


@then("writes fail with 503 while reads keep working")
def step_writes_503_reads_ok(context):
    context.chaos.check_writes_refused_reads_served()


@then("the API answers within {seconds:Duration} while the fault lasts")
def step_answers_within_during_fault(context, seconds):
    context.chaos.check_answers_within_during_faults(seconds)


@then("every request started after the fault succeeds")
def step_no_failure_after_fault(context):
    context.chaos.check_no_failures_after_fault()
