"""Steps about a service's clock (libfaketime, live) and the sign-in sessions the clock scenarios judge."""

from behave import given, then, when

from support.checks import sessions


@when("the clock of {service:Service} jumps {n:Number} seconds ahead")
def step_clock_jumps_ahead(context, service, n):
    context.chaos.inject(context.chaos.faults.clock_offset(service, n, jump=True))  # real time again at the end


@when("the clock of {service:Service} jumps {n:Number} seconds back")
def step_clock_jumps_back(context, service, n):
    context.chaos.inject(context.chaos.faults.clock_offset(service, -n, jump=True))


@when("the clock of {service:Service} is skewed by {n:Number} seconds for {seconds:Duration}")
def step_clock_skewed_for(context, service, n, seconds):
    context.chaos.hold(context.chaos.faults.clock_offset(service, n), seconds)


@when("the clock of {service:Service} is skewed back by {n:Number} seconds for {seconds:Duration}")
def step_clock_skewed_back_for(context, service, n, seconds):
    context.chaos.hold(context.chaos.faults.clock_offset(service, -n), seconds)


@given("a client has signed in")
def step_client_signed_in(context):
    context.chaos.session = sessions.sign_in(context.chaos.stack.api_url, context.chaos.stack.workload)


@then("the client's session is still valid")
def step_session_still_valid(context):
    sessions.check_session_valid(context.chaos.session, context.chaos.ledger.windows())
