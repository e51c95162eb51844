"""Steps about a replicated database by role (the primary, a replica, etcd) and the balanced API's replicas."""

from behave import then, when

from support.run.cluster import cluster_of

#: for docs/steps.md: the replicated stack runs on the process backend and on Docker's host network
BACKENDS = "process, docker (host network; stack/ha/stack.toml)"


@when("the primary is killed")
def step_primary_killed(context):
    context.chaos.inject(cluster_of(context.chaos.cluster).node_down("primary", "kill"))


@when("the primary is stopped")
def step_primary_stopped(context):
    context.chaos.inject(cluster_of(context.chaos.cluster).node_down("primary", "stop"))


@when("the primary is paused for {seconds:Duration}")
def step_primary_paused(context, seconds):
    context.chaos.hold(cluster_of(context.chaos.cluster).node_pause("primary"), seconds)


@when("a replica is killed")
def step_replica_killed(context):
    context.chaos.inject(cluster_of(context.chaos.cluster).node_down("replica", "kill"))


@when("a switchover to a replica happens")
def step_switchover(context):
    context.chaos.inject(cluster_of(context.chaos.cluster).switchover())


@when("replication to the replicas lags by {seconds:Duration}")
def step_replication_lags(context, seconds):
    context.chaos.hold(cluster_of(context.chaos.cluster).replay_paused(), seconds)


@when("etcd loses its quorum for {seconds:Duration}")
def step_etcd_quorum_lost(context, seconds):
    context.chaos.hold(cluster_of(context.chaos.cluster).etcd_quorum_lost(), seconds)


@when("one api replica is killed")
def step_api_replica_killed(context):
    context.chaos.inject(cluster_of(context.chaos.cluster).api_replica_down())


@then("a new primary is elected within {seconds:Duration}")
def step_new_primary_within(context, seconds):
    cluster_of(context.chaos.cluster).check_new_primary_within(seconds)


@then("the old primary rejoins as a replica within {seconds:Duration}")
def step_old_primary_rejoins(context, seconds):
    cluster_of(context.chaos.cluster).check_old_primary_rejoins_within(seconds)


@then("the cluster has {count:Count} healthy replicas within {seconds:Duration}")
def step_healthy_replicas(context, count, seconds):
    cluster_of(context.chaos.cluster).check_healthy_replicas_within(count, seconds)


@then("at most one node accepts writes at any time")
def step_one_writer(context):
    cluster_of(context.chaos.cluster).check_at_most_one_writer()


@then("no request fails later than {seconds:Duration} after the replica died")
def step_no_failures_after_replica_died(context, seconds):
    cluster_of(context.chaos.cluster).check_no_failures_after_replica_died(context.chaos.observed(seconds), seconds)


@then("the primary had stepped down within {seconds:Duration} of the fault")
def step_primary_steps_down(context, seconds):
    cluster_of(context.chaos.cluster).check_demoted_within(seconds)


@when("the primary is killed while its replicas are {seconds:Duration} behind")
def step_primary_killed_behind(context, seconds):
    context.chaos.inject(cluster_of(context.chaos.cluster).kill_behind(seconds))


@then("acknowledged writes are lost in the failover and each is reported")
def step_loss_reported(context):
    cluster_of(context.chaos.cluster).check_loss_reported(context.chaos.observed())


@when("the primary is cut off from the cluster for {seconds:Duration}")
def step_primary_cut_off(context, seconds):
    context.chaos.hold(cluster_of(context.chaos.cluster).primary_cut_off(), seconds)


@then("no write acknowledged by the cut-off primary is lost")
def step_cut_off_writes_kept(context):
    cluster_of(context.chaos.cluster).check_cut_off_writes(context.chaos.observed())


@then("writes acknowledged by the cut-off primary are lost and each is reported")
def step_cut_off_writes_lost(context):
    cluster_of(context.chaos.cluster).check_cut_off_writes(context.chaos.observed(), expect_loss=True)
