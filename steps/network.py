"""Steps that break the network between two services, through the suite's fault proxy."""
from behave import when

from support.faults.network import LinkDown, LinkLatency, LinkReset


@when("the network between {a:Service} and {b:Service} adds {ms:Number} ms of latency for {seconds:Duration}")
def step_latency_for(context, a, b, ms, seconds):
    context.chaos.hold(LinkLatency(context.chaos.stack.link(a, b), ms), seconds)


@when("the network between {a:Service} and {b:Service} adds {ms:Number} ms of latency")
def step_latency(context, a, b, ms):
    context.chaos.inject(LinkLatency(context.chaos.stack.link(a, b), ms))


@when("the network between {a:Service} and {b:Service} is cut for {seconds:Duration}")
def step_cut_for(context, a, b, seconds):
    context.chaos.hold(LinkDown(context.chaos.stack.link(a, b)), seconds)


@when("connections between {a:Service} and {b:Service} are reset")
def step_reset(context, a, b):
    context.chaos.inject(LinkReset(context.chaos.stack.link(a, b)))
