"""Steps that break the database from the inside (sessions, slots, locks, read-only, slowness), and judge it."""

from behave import given, then, when


@when("all database connections of the api are terminated")
def step_api_sessions_terminated(context):
    context.chaos.inject(context.chaos.faults.terminate_api_sessions())


# the workload's table (its name, or "users" as the reference stack says it): checked when the features are read
@when("the {table:Table} table is locked for {seconds:Duration}")
def step_users_table_locked(context, table, seconds):
    context.chaos.hold(context.chaos.faults.lock_table(), seconds)


@when("postgres runs out of connection slots for {seconds:Duration}")
def step_out_of_slots(context, seconds):
    context.chaos.hold(context.chaos.faults.exhaust_slots(), seconds)


@given("postgres has no connection slot left")
def step_no_slot_left(context):
    context.chaos.inject(context.chaos.faults.exhaust_slots())  # healed at the end of the scenario


@when("the database is read-only for {seconds:Duration}")
def step_read_only(context, seconds):
    context.chaos.hold(context.chaos.faults.read_only(), seconds)


@when("every statement of the api is slowed by {delay:Duration} for {seconds:Duration}")
def step_statements_slowed(context, delay, seconds):
    context.chaos.hold(context.chaos.faults.slow_statements(delay), seconds)


@when("two sessions deadlock on the {table:Table} table for {seconds:Duration}")
def step_deadlocks(context, table, seconds):
    context.chaos.hold(context.chaos.faults.deadlocks(), seconds)


@when("two sessions deadlock on the {table:Table} table")
def step_deadlock_once(context, table):
    context.chaos.hold(context.chaos.faults.deadlocks(), 0)  # healed as soon as one deadlock was made


@when("writes to the {table:Table} table meet serialization failures for {seconds:Duration}")
def step_serialization_failures(context, table, seconds):
    context.chaos.hold(context.chaos.faults.serialization_failures(), seconds)


@when("a transaction holds rows of the {table:Table} table for {seconds:Duration}")
def step_rows_held(context, table, seconds):
    context.chaos.hold(context.chaos.faults.hold_rows(), seconds)


@when("the running statements of the api are cancelled for {seconds:Duration}")
def step_statements_cancelled(context, seconds):
    context.chaos.hold(context.chaos.faults.cancel_statements(), seconds)


@when("the running statements of the api are cancelled")
def step_statements_cancelled_once(context):
    context.chaos.inject(context.chaos.faults.cancel_statements(once=True))


@given("every statement of the api is slowed by {delay:Duration}")
def step_statements_slowed_open(context, delay):
    context.chaos.inject(context.chaos.faults.slow_statements(delay))  # healed at the end of the scenario


@then("writes fail with 503 while reads keep working")
def step_writes_503_reads_ok(context):
    context.chaos.check_writes_refused_reads_served()


@then("the API answers within {seconds:Duration} while the fault lasts")
def step_answers_within_during_fault(context, seconds):
    context.chaos.check_answers_within_during_faults(seconds)


@then("every request started after the fault succeeds")
def step_no_failure_after_fault(context):
    context.chaos.check_no_failures_after_fault()
