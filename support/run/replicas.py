"""Judgements on the replicas of a scenario: the replicated database's (a killed one started again, a frozen
primary replaced while frozen, lagging replicas behind and catching up) and a balanced service's (a rolling
graceful restart).

These read the cluster scenario (:class:`support.run.cluster.ClusterScenario`: its
faults, its ledger, its watch's samples, its controller's waits) and add what they
measured to its figures; every wait has the deadline the Gherkin gave, in seconds.
"""

from __future__ import annotations

import time
from typing import Any

from support.checks.verdict import CheckFailed
from support.cluster.controller import RoleWaitFailed
from support.core.waiting import WaitTimeout
from support.faults.cluster import NodeDown, NodePause, ReplayPaused
from support.faults.graceful import RollingRestart
from support.faults.replicas import SynchronousReplicaDown
from support.run.cluster import ClusterScenario
from support.stack.stack import Stack

__all__ = [
    "synchronous_replica_down",
    "start_killed_replica",
    "check_taken_over_while_frozen",
    "check_replicas_behind",
    "check_caught_up_within",
    "rolling_restart",
]


def _last(cluster: ClusterScenario, kind: type, what: str) -> Any:
    """The scenario's last fault of type ``kind`` that struck (it knows the primary it struck under)."""
    return cluster.last_fault(kind, f"no {what} in this scenario, so there is nothing to judge")


def _window(cluster: ClusterScenario, fault: Any) -> tuple[float, float | None]:
    """When ``fault`` was injected and healed (monotonic s; healed None while it holds)."""
    entry = cluster.ledger.entry_of(fault)
    return entry.injected, entry.healed


def synchronous_replica_down(cluster: ClusterScenario) -> SynchronousReplicaDown:
    """The synchronous replica killed and kept down (a fault on the cluster scenario's roles, so the cluster's
    judgements and figures see it)."""
    fault = SynchronousReplicaDown(
        cluster.controller, cluster.stack.services, "replica", cluster.settings.start_timeout
    )
    cluster.faults.append(fault)
    return fault


def start_killed_replica(cluster: ClusterScenario) -> None:
    """The replica killed last in the scenario started again (the heal of its fault, within the start timeout)."""
    for fault in reversed(cluster.faults):
        if isinstance(fault, NodeDown) and fault.role == "replica" and fault.node:
            cluster.ledger.heal(fault)
            return
    raise CheckFailed("no replica was killed in this scenario: `When a replica is killed` comes first")


def check_taken_over_while_frozen(cluster: ClusterScenario) -> None:
    """Another node accepted writes before the frozen primary was thawed (its leader key expired while it was
    frozen, ``ttl`` s after its last renewal); the freeze must have lasted longer than ``ttl``."""
    fault = _last(cluster, NodePause, "primary was paused")
    injected, healed = _window(cluster, fault)
    ttl = cluster.database.options.ttl
    frozen = (healed if healed is not None else time.monotonic()) - injected
    if frozen <= ttl:
        raise CheckFailed(
            f"{fault.node} was frozen {frozen:.1f} s, not longer than Patroni's leader key lives (ttl = {ttl} s): "
            "no replica may take over; pause it for longer than ttl"
        )
    first = cluster.watch.first_writer_after(injected, fault.primary_before)
    if first is None or healed is None or first[1] > healed:
        seen = f"{first[0]} only {first[1] - injected:.1f} s after the fault" if first else "no other writer at all"
        raise CheckFailed(
            f"no replica took over while {fault.node} was frozen for {frozen:.1f} s (its leader key lives ttl = {ttl} "
            f"s): {seen}; now {cluster.controller.describe()}"
        )
    cluster.measured["new_primary"] = first[0]
    cluster.measured["failover_s"] = round(first[1] - injected, 3)
    cluster.measured["failover_floor_s"] = cluster.database.options.failover_floor
    cluster.measured["frozen_s"] = round(frozen, 3)


def check_replicas_behind(cluster: ClusterScenario) -> None:
    """While replication lagged, every replica's replayed WAL position stood still (the same in two samples or
    more) below the highest position the primary was sampled writing: the lag was real. The lag in bytes goes
    to the figures. (A position that stood still, not a single sample, because the heal resumes the replicas
    within the window and a replica sampled just after its resume has caught up.)"""
    fault = _last(cluster, ReplayPaused, "replication lag")
    injected, healed = _window(cluster, fault)
    end = healed if healed is not None else time.monotonic()
    seen: dict[str, list[int]] = {}
    for sample in cluster.watch.snapshot():
        if injected <= sample.t <= end and sample.state.lsn is not None:
            seen.setdefault(sample.state.name, []).append(sample.state.lsn)
    unseen = [name for name in (fault.primary_before, *fault.replicas) if name not in seen]
    if unseen:
        raise CheckFailed(
            f"{', '.join(unseen)} answered no sample while replication lagged ({end - injected:.1f} s): "
            "nothing to judge the lag by; make it last longer"
        )
    wrote = max(seen[fault.primary_before])
    lags = {}
    for name in fault.replicas:
        # samples before the pause took effect (inject() resolves the roles first) moved on: not those
        stood = [lsn for lsn in set(seen[name]) if seen[name].count(lsn) >= 2]
        lags[name] = wrote - min(stood) if stood else 0
    level = [name for name, lag in lags.items() if lag <= 0]
    if level:
        raise CheckFailed(
            f"the replicas were not behind the primary while replication lagged: the replayed position of "
            f"{', '.join(level)} never stood still below what {fault.primary_before} wrote; the lag had no effect"
        )
    cluster.measured["lag_at_heal_bytes"] = lags


def check_caught_up_within(cluster: ClusterScenario, seconds: float) -> None:
    """Every node replays up to the primary's WAL position within ``seconds`` of replication resuming."""
    fault = _last(cluster, ReplayPaused, "replication lag")
    _, healed = _window(cluster, fault)
    if healed is None:
        raise CheckFailed("replication still lags: the replicas cannot catch up before the fault ends")
    try:
        cluster.controller.wait_caught_up(max(seconds - (time.monotonic() - healed), 0.0))
    except (WaitTimeout, RoleWaitFailed) as error:
        raise CheckFailed(
            f"the replicas did not catch up with the primary within {seconds:g} s of replication resuming: {error}"
        ) from None
    cluster.measured["caught_up_s"] = round(time.monotonic() - healed, 3)


def rolling_restart(stack: Stack, timeout: float) -> RollingRestart:
    """A rolling graceful restart of every service the workload's target balances over (its ``uses``), in the
    stack file's order; ``timeout`` s for each replica's exit, its start and the balancer taking it back."""
    replicas = [server for client, server in stack.links if client == stack.target]
    if len(replicas) < 2:
        raise CheckFailed(
            f"{stack.target} balances over {len(replicas)} replica(s) (its uses): a rolling restart needs two or "
            "more behind it; run it with -D stack_file=stack/ha/stack.toml"
        )
    return RollingRestart([stack.service(name) for name in replicas], stack.api_url, timeout)
