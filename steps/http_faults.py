"""Steps that break HTTP between two services (or between the load and the API), request by request."""

from behave import when


@when("{n:Number}% of requests from {a:Service} to {b:Service} get {status:Count} for {seconds:Duration}")
def step_http_replace(context, n, a, b, status, seconds):
    context.chaos.hold(context.chaos.faults.http_replace(a, b, n, status), seconds)


@when(
    "{n:Number}% of requests from {a:Service} to {b:Service} get {status:Count} with Retry-After {after:Count} "
    "for {seconds:Duration}"
)
def step_http_replace_retry_after(context, n, a, b, status, after, seconds):
    context.chaos.hold(context.chaos.faults.http_replace(a, b, n, status, retry_after=after), seconds)


@when("{n:Number}% of requests from {a:Service} to {b:Service} are aborted for {seconds:Duration}")
def step_http_abort(context, n, a, b, seconds):
    context.chaos.hold(context.chaos.faults.http_abort(a, b, n), seconds)


@when("requests from {a:Service} to {b:Service} are delayed by {ms:Number} ms for {seconds:Duration}")
def step_http_delay(context, a, b, ms, seconds):
    context.chaos.hold(context.chaos.faults.http_delay(a, b, ms), seconds)
