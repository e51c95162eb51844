"""Steps about a service's background work: what its worker must do with every acknowledged write."""

from behave import then


@then("every acknowledged write is processed within {seconds:Duration}")
def step_processed_within(context, seconds):
    context.chaos.check_processed_within(seconds)
