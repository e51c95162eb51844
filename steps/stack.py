"""Steps about the stack as a whole and its services' life: start, stop, kill, restart, pause."""

from behave import given, when


@given("the stack is healthy")
def step_stack_healthy(context):
    context.chaos.check_healthy()


# registered before "{service} restarts", which would otherwise also match it
@when("the whole stack restarts")
def step_whole_stack_restarts(context):
    context.chaos.inject(context.chaos.faults.restart_stack())


# registered before "{service} restarts ...": a deploy's restart, SIGTERM then start, judged by the in-flight checker
@when("{service:Service} is restarted gracefully")
def step_service_restarted_gracefully(context, service):
    context.chaos.inject(context.chaos.faults.graceful_restart(service))


@when("{service:Service} restarts")
def step_service_restarts(context, service):
    context.chaos.inject(context.chaos.faults.restart(service, "fast"))


@when("{service:Service} restarts immediately")
def step_service_restarts_immediately(context, service):
    context.chaos.inject(context.chaos.faults.restart(service, "immediate"))


@when("{service:Service} is killed")
def step_service_killed(context, service):
    context.chaos.inject(context.chaos.faults.kill(service))


@when("a random service is killed")
def step_random_service_killed(context):
    context.chaos.inject(context.chaos.faults.kill(context.chaos.random_service()))


@when("{service:Service} is stopped")
def step_service_stopped(context, service):
    context.chaos.inject(context.chaos.faults.stop(service))


@when("{service:Service} is started")
def step_service_started(context, service):
    context.chaos.start_service(service)


@when("{service:Service} is down for {seconds:Duration}")
def step_service_down_for(context, service, seconds):
    context.chaos.hold(context.chaos.faults.stop(service), seconds)


@when("{service:Service} is paused for {seconds:Duration}")
def step_service_paused_for(context, service, seconds):
    context.chaos.hold(context.chaos.faults.pause(service), seconds)
