"""Steps that break the network between two services, through the suite's fault proxy."""

from behave import when


@when("the network between {a:Service} and {b:Service} adds {ms:Number} ms of latency for {seconds:Duration}")
def step_latency_for(context, a, b, ms, seconds):
    context.chaos.hold(context.chaos.faults.latency(a, b, ms), seconds)


@when("the network between {a:Service} and {b:Service} adds {ms:Number} ms of latency")
def step_latency(context, a, b, ms):
    context.chaos.inject(context.chaos.faults.latency(a, b, ms))


@when("the network between {a:Service} and {b:Service} is cut for {seconds:Duration}")
def step_cut_for(context, a, b, seconds):
    context.chaos.hold(context.chaos.faults.cut(a, b), seconds)


@when("connections between {a:Service} and {b:Service} are reset")
def step_reset(context, a, b):
    context.chaos.inject(context.chaos.faults.reset(a, b))
