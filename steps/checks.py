"""Then steps that judge what the load saw."""

from behave import then


@then("the API recovers within {seconds:Duration}")
def step_recovers_within(context, seconds):
    context.chaos.check_recovered_within(seconds)


@then("the API recovers within {seconds:Duration} in {percent:Number}% of runs")
def step_recovers_within_share(context, seconds, percent):
    """Over the runs of a repeated scenario (-D repeat=N, @repeat.N), judged at its last run."""
    context.chaos.check_recovered_within_share(seconds, percent)


@then("no acknowledged write is lost")
def step_no_lost_write(context):
    context.chaos.check_no_lost_writes()


@then("the error rate stays below {percent:Number}%")
def step_error_rate_below(context, percent):
    context.chaos.check_error_rate_below(percent)


@then("no request takes longer than {seconds:Duration}")
def step_no_slow_request(context, seconds):
    context.chaos.check_no_request_slower_than(seconds)


@then("every failed request is answered with 503")
def step_failures_503(context):
    context.chaos.check_failures_are_503()


@then("no in-flight request is dropped")
def step_no_in_flight_dropped(context):
    context.chaos.check_no_in_flight_dropped()
