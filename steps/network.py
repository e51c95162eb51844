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


@when(
    "the network between {a:Service} and {b:Service} adds {ms:Number} ms of latency with {jitter:Number} ms "
    "of jitter for {seconds:Duration}"
)
def step_jitter_for(context, a, b, ms, jitter, seconds):
    context.chaos.hold(context.chaos.faults.latency(a, b, ms, jitter), seconds)


@when("the network between {a:Service} and {b:Service} is limited to {kbps:Number} KB/s for {seconds:Duration}")
def step_bandwidth_for(context, a, b, kbps, seconds):
    context.chaos.hold(context.chaos.faults.bandwidth(a, b, kbps), seconds)


@when("the network between {a:Service} and {b:Service} stalls for {seconds:Duration}")
def step_stall_for(context, a, b, seconds):
    context.chaos.hold(context.chaos.faults.stall(a, b), seconds)


@when("connections between {a:Service} and {b:Service} close {ms:Number} ms late for {seconds:Duration}")
def step_slow_close_for(context, a, b, ms, seconds):
    context.chaos.hold(context.chaos.faults.slow_close(a, b, ms), seconds)


@when("connections between {a:Service} and {b:Service} are cut after {kb:Number} KB for {seconds:Duration}")
def step_limit_data_for(context, a, b, kb, seconds):
    context.chaos.hold(context.chaos.faults.limit_data(a, b, kb), seconds)
