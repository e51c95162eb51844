"""Steps about replicas: a killed database replica started again, a frozen primary replaced, lagging replicas,
and a rolling graceful restart of the replicas behind the workload's balancer."""

from behave import then, when

from support.run.cluster import cluster_of
from support.run.replicas import (
    check_caught_up_within,
    check_replicas_behind,
    check_taken_over_while_frozen,
    rolling_restart,
    start_killed_replica,
    synchronous_replica_down,
)

#: for docs/steps.md: the replicated stack runs on the process backend and on Docker's host network
BACKENDS = "process, docker (host network; stack/ha/stack.toml)"


@when("the synchronous replica is killed")
def step_synchronous_replica_killed(context):
    context.chaos.inject(synchronous_replica_down(cluster_of(context.chaos.cluster)))


@when("the killed replica is started again")
def step_killed_replica_started(context):
    start_killed_replica(cluster_of(context.chaos.cluster))


@then("a replica had taken over before the old primary thawed")
def step_taken_over_while_frozen(context):
    check_taken_over_while_frozen(cluster_of(context.chaos.cluster))


@then("the replicas were behind the primary while replication lagged")
def step_replicas_behind(context):
    check_replicas_behind(cluster_of(context.chaos.cluster))


@then("the replicas catch up within {seconds:Duration}")
def step_replicas_catch_up(context, seconds):
    check_caught_up_within(cluster_of(context.chaos.cluster), seconds)


@when("the api replicas are restarted gracefully one at a time")
def step_rolling_restart(context):
    context.chaos.inject(rolling_restart(context.chaos.stack, context.chaos.settings.start_timeout))
