"""Steps that break the database from the inside (sessions, slots, locks, read-only, slowness), and judge it."""
from behave import given, then, when

from support.checks.checkers import check_no_failures_after
from support.faults.database import ReadOnlyDatabase, SlotExhaustion, SlowStatements, TableLock, TerminateBackends, api_role
from support.checks.during_faults import (check_answers_within_during_faults, check_writes_refused_reads_served,
                               effect_window, fault_over, fault_span)


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
    check_writes_refused_reads_served(context.chaos.observed(), effect_window(context.chaos.ledger))


@then("the API answers within {seconds:Duration} while the fault lasts")
def step_answers_within_during_fault(context, seconds):
    check_answers_within_during_faults(context.chaos.observed(), fault_span(context.chaos.ledger), seconds)


@then("every request started after the fault succeeds")
def step_no_failure_after_fault(context):
    check_no_failures_after(context.chaos.observed(), fault_over(context.chaos.ledger), "the fault")
