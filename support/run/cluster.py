"""One scenario's view of a replicated database: the role faults its steps inject and the judgements on roles.

:class:`ClusterScenario` is made for each scenario of a stack that has a
``kind = "patroni"`` database; it watches every node from the scenario's start
(:class:`~support.cluster.watch.ClusterWatch`), makes the faults the steps name
by role, and keeps what the Then steps measured (failover time, rejoin time,
writes per node) for ``figures.json``. On a stack without one, every step on it
fails with one line saying which stack file has one.
"""

from __future__ import annotations

import time
from typing import Any

from support.checks import durability as durable
from support.checks import statuses
from support.checks.verdict import CheckFailed
from support.cluster.controller import ClusterController
from support.cluster.view import ClusterView
from support.cluster.watch import ClusterWatch, other_writer_at
from support.core.config import Settings
from support.core.waiting import retry
from support.faults.cluster import (
    EtcdQuorumLost,
    KillBehindReplicas,
    NodeDown,
    NodePause,
    PrimaryCutOff,
    ReplayPaused,
    ReplicaDown,
    Switchover,
)
from support.faults.ledger import FaultLedger
from support.load.history import OK, Request
from support.stack import database
from support.stack.stack import Stack

__all__ = ["ClusterScenario", "NO_CLUSTER", "cluster_of"]

NO_CLUSTER = (
    'this stack has no replicated database (a service of kind = "patroni"): run the cluster steps with '
    "-D stack_file=stack/ha/stack.toml"
)

_RoleFault = NodeDown | NodePause | Switchover | ReplayPaused | KillBehindReplicas | PrimaryCutOff


class ClusterScenario:
    """The replicated database of ``stack`` during one scenario whose faults go on ``ledger``."""

    def __init__(self, stack: Stack, settings: Settings, ledger: FaultLedger) -> None:
        self.stack = stack
        self.settings = settings
        self.ledger = ledger
        self.database = next(iter(stack.replicated.values()))
        self.controller = ClusterController(self.database)
        self.watch = ClusterWatch(ClusterView(self.database))
        self.faults: list[Any] = []
        self.measured: dict[str, Any] = {}

    # -- faults ----------------------------------------------------------------------
    def _made(self, fault: Any) -> Any:
        self.faults.append(fault)
        return fault

    def node_down(self, role: str, how: str = "kill") -> NodeDown:
        """The node holding ``role`` (``primary``/``replica``) killed or stopped; it stays down until healed."""
        return self._made(NodeDown(self.controller, self.stack.services, role, self.settings.start_timeout, how=how))

    def node_pause(self, role: str) -> NodePause:
        """The node holding ``role`` frozen."""
        return self._made(NodePause(self.controller, self.stack.services, role, self.settings.start_timeout))

    def kill_behind(self, seconds: float) -> KillBehindReplicas:
        """The primary killed once its replicas have received none of its WAL for ``seconds``."""
        return self._made(
            KillBehindReplicas(self.controller, self.settings.start_timeout, self.stack.services, seconds)
        )

    def primary_cut_off(self) -> PrimaryCutOff:
        """The primary partitioned from etcd and the other nodes (its proxied links down); the balancer still
        reaches it."""
        return self._made(PrimaryCutOff(self.controller, self.settings.start_timeout, self.stack.links))

    def switchover(self) -> Switchover:
        """A planned switchover from the primary to a replica."""
        return self._made(Switchover(self.controller, self.settings.start_timeout))

    def replay_paused(self) -> ReplayPaused:
        """WAL replay paused on every replica."""
        return self._made(ReplayPaused(self.controller, self.settings.start_timeout, self.stack.services))

    def etcd_quorum_lost(self) -> EtcdQuorumLost:
        """A majority of etcd's members frozen."""
        return self._made(EtcdQuorumLost(self.stack.services, self.database.etcd))

    def api_replica_down(self) -> ReplicaDown:
        """The first service the workload's target balances over, killed and kept down until healed."""
        replicas = [server for client, server in self.stack.links if client == self.stack.target]
        if not replicas:
            raise CheckFailed(f"{self.stack.target} balances over no replica (it uses no service)")
        return self._made(ReplicaDown(self.stack.service(replicas[0]), self.settings.start_timeout))

    # -- judgements ----------------------------------------------------------------------
    def last_fault(
        self,
        kind: type,
        missing: str = "no fault on the cluster's roles happened in this scenario (a When step kills the primary)",
    ) -> Any:
        """The scenario's last fault of type ``kind`` that struck (it knows the primary it struck under); else
        :class:`CheckFailed` saying ``missing``."""
        for fault in reversed(self.faults):
            if isinstance(fault, kind) and bool(getattr(fault, "primary_before", None)):
                return fault
        raise CheckFailed(missing)

    def _injected(self, fault: Any) -> float:
        for window, entry in zip(self.ledger.windows(), self.ledger.entries, strict=True):
            if entry.fault is fault:
                return window.injected
        return time.monotonic()

    def check_new_primary_within(self, seconds: float) -> None:
        """A node other than the fault's primary became primary within ``seconds`` of the fault."""
        fault = self.last_fault(_RoleFault)  # type: ignore[arg-type]
        injected = self._injected(fault)
        remaining = max(seconds - (time.monotonic() - injected), 0.0)
        name, _ = self.controller.wait_new_primary(fault.primary_before, remaining)
        first = self.watch.first_writer_after(injected, fault.primary_before)
        self.measured["new_primary"] = name
        self.measured["failover_s"] = round((first[1] if first else time.monotonic()) - injected, 3)
        self.measured["failover_floor_s"] = self.database.options.failover_floor
        if remaining == 0.0 and (first is None or first[1] - injected > seconds):
            # the bound had passed before this step (the fault was held longer): the watch says when it happened
            raise CheckFailed(
                f"no new primary within {seconds:g} s of the fault ({fault.primary_before} was primary): the first "
                f"other node seen accepting writes was {f'{first[0]} at {first[1] - injected:.1f} s' if first else 'none'}"
            )

    def check_old_primary_rejoins_within(self, seconds: float) -> None:
        """The fault's primary, started again (a killed node's heal), streams from the new primary within
        ``seconds`` of being started."""
        fault = self.last_fault(_RoleFault)  # type: ignore[arg-type]
        started = time.monotonic()
        self.ledger.heal(fault)
        self.controller.wait_streaming([fault.primary_before], max(seconds - (time.monotonic() - started), 0.0))
        self.measured["rejoin_s"] = round(time.monotonic() - started, 3)

    def check_healthy_replicas_within(self, count: int, seconds: float) -> None:
        """``count`` replicas stream from the primary within ``seconds``."""
        self.controller.wait_healthy_replicas(count, seconds)

    def check_whole(self, seconds: float) -> None:
        """One primary and every other node streaming from it, within ``seconds``."""
        self.controller.wait_healthy_replicas(len(self.database.nodes) - 1, seconds)

    def check_at_most_one_writer(self) -> None:
        """No two nodes accepted writes at the same time, in every sample taken since the scenario began."""
        overlaps = self.watch.overlaps()
        if overlaps:
            described = "; ".join(
                f"{one.node} and {other.node} both from {max(one.start, other.start) - self.watch.started:.2f} s "
                f"to {min(one.end, other.end) - self.watch.started:.2f} s"
                for one, other in overlaps[:5]
            )
            raise CheckFailed(f"two nodes accepted writes at once (split brain): {described}")
        if not self.watch.snapshot():
            raise CheckFailed("the cluster was not sampled at all in this scenario: nothing to judge")

    def check_every_node_holds(self, history: list[Request], keys: list[str]) -> None:
        """Every acknowledged write (``keys``) is stored on every node once the nodes agree; the count per node
        goes to the figures."""
        per_node = self.controller.keys_per_node(self.stack.workload, keys, self.settings.start_timeout)
        lost = {name: sorted(set(keys) - found) for name, found in per_node.items() if found is not None}
        self.measured["writes_lost_per_node"] = {name: len(missing) for name, missing in lost.items()}
        self.measured["writes_lost_examples"] = {name: missing[:5] for name, missing in lost.items() if missing}
        missing = {name: found for name, found in lost.items() if found}
        if missing:
            described = "; ".join(
                f"{name}: {len(found)} (e.g. {', '.join(found[:3])})" for name, found in missing.items()
            )
            raise CheckFailed(f"acknowledged writes missing on nodes once they agreed: {described}")

    def check_no_failures_after_replica_died(self, history: list[Request], seconds: float) -> None:
        """No request that started more than ``seconds`` after the last balanced replica was killed failed."""
        fault = next((f for f in reversed(self.faults) if isinstance(f, ReplicaDown)), None)
        if fault is None:
            raise CheckFailed("no api replica was killed in this scenario")
        what = f"{seconds:g} s after {fault.target} died"
        statuses.check_no_failures_after(history, self._injected(fault) + seconds, what)

    def check_demoted_within(self, seconds: float) -> None:
        """While the last fault held, no node accepted writes from ``seconds`` after it began to its heal (the
        primary stepped down), as the watch sampled it; the fault must have lasted longer than ``seconds``."""
        fault = self.faults[-1] if self.faults else None
        if fault is None:
            raise CheckFailed("no fault on the cluster happened in this scenario")
        entry = self.ledger.entry_of(fault)
        healed = entry.healed if entry.healed is not None else time.monotonic()
        deadline = entry.injected + seconds
        if healed <= deadline:
            raise CheckFailed(f"{fault.name} lasted {healed - entry.injected:.1f} s, not the {seconds:g} s to judge")
        if not any(deadline <= s.t <= healed for s in self.watch.snapshot()):
            raise CheckFailed(f"the cluster was not sampled between {seconds:g} s into {fault.name} and its heal")
        still = [b for b in self.watch.bands() if b.start <= healed and b.end >= deadline]
        if still:
            late = "; ".join(f"{b.node} until {b.end - entry.injected:.1f} s" for b in still)
            raise CheckFailed(f"a node still accepted writes {seconds:g} s into {fault.name}: {late}")
        self.measured["stepped_down_by_s"] = seconds

    def check_loss_reported(self, history: list[Request]) -> None:
        """Acknowledged writes are missing on the new primary, each reported with when it was acknowledged;
        fails when none is (the scenario documents the loss asynchronous replication allows)."""
        keys = durable.written_keys(history)
        rows = retry(
            lambda: database.rows_for_keys(self.stack.admin_dsn, self.stack.workload, keys),
            self.settings.start_timeout,
            "the new primary accepting the durability read-back",
            retry_on=database.DatabaseError,
        )
        lost = durable.durability(history, rows).lost
        if not lost:
            raise CheckFailed(
                "no acknowledged write was lost in the failover: replication kept every acknowledged write "
                "(this scenario expects the loss that asynchronous replication allows)"
            )
        since = min(r.start for r in history)
        acked = {r.key: r.end - since for r in history if r.op == "write" and r.outcome == "ok"}
        self.measured["lost_writes"] = [{"key": key, "acknowledged_at_s": round(acked[key], 3)} for key in lost]
        self.measured["lost_writes_count"] = len(lost)

    def check_cut_off_writes(self, history: list[Request], expect_loss: bool = False) -> None:
        """The writes the cut-off primary acknowledged, each looked for on the primary of now (read back by SQL).

        Acknowledged by the cut-off primary: answered ``ok`` between the cut and its heal at a moment when the
        watch saw no other node accepting writes (within one sampling interval). Each missing one goes to the
        figures (key, when acknowledged, by which node) and fails the check; with ``expect_loss`` the check fails
        when none is missing instead (a scenario documenting what asynchronous replication allows)."""
        fault = self.last_fault(PrimaryCutOff)
        entry = self.ledger.entry_of(fault)
        healed = entry.healed if entry.healed is not None else time.monotonic()
        bands, old, slack = self.watch.bands(), fault.primary_before, self.watch.interval
        acked = [
            r
            for r in history
            if r.op == "write" and r.outcome == OK and entry.injected <= r.end <= healed
            if other_writer_at(bands, old, r.end, slack) is None
        ]
        keys = [r.key for r in acked]
        rows = retry(
            lambda: database.rows_for_keys(self.stack.admin_dsn, self.stack.workload, keys),
            self.settings.start_timeout,
            "the primary accepting the read-back of the cut-off primary's writes",
            retry_on=database.DatabaseError,
        )
        since = min(r.start for r in history)
        lost = [r for r in acked if r.key not in rows]
        self.measured["cut_off_primary"] = old
        self.measured["cut_off_acknowledged"] = len(acked)
        self.measured["cut_off_lost"] = [
            {"key": r.key, "acknowledged_at_s": round(r.end - since, 3), "by": old} for r in lost
        ]
        what = f"{len(acked)} writes acknowledged while {old} was cut off (from {entry.injected - since:.1f} s)"
        if expect_loss and not lost:
            raise CheckFailed(f"{what}: none was lost (this scenario expects the loss asynchronous replication allows)")
        if lost and not expect_loss:
            shown = ", ".join(f"{r.key} (acknowledged at {r.end - since:.2f} s)" for r in lost[:5])
            raise CheckFailed(
                f"{len(lost)} of the {what} are missing from the new primary: acknowledged by {old} alone, lost "
                f"when it rejoined: {shown}{' ...' if len(lost) > 5 else ''}"
            )

    def bands(self) -> list[tuple[str, float, float]]:
        """Who was primary when: ``(node, start, end)`` in monotonic s, for the chart."""
        return [(band.node, band.start, band.end) for band in self.watch.bands()]

    def figures(self) -> dict[str, Any]:
        """What the scenario measured of the cluster: failover and rejoin times, time without a writable primary
        after the first role fault, lag at the fault, writes lost per node, and who was primary when."""
        figures = dict(self.measured)
        faults = [f for f in self.faults if bool(getattr(f, "primary_before", None))]
        if faults:
            injected = self._injected(faults[0])
            figures["without_writable_primary_s"] = round(self.watch.without_primary(injected), 3)
            figures["lag_at_fault_bytes"] = self._lag_at(injected)
        start = self.watch.started
        figures["primaries"] = [
            {"node": node, "from_s": round(a - start, 3), "to_s": round(b - start, 3)} for node, a, b in self.bands()
        ]
        return figures

    def _lag_at(self, moment: float) -> int | None:
        """The primary's WAL position minus the furthest-behind replica's, in the last round sampled before ``moment``."""
        before = [s for s in self.watch.snapshot() if s.t <= moment and s.state.lsn is not None]
        latest: dict[str, Any] = {}
        for sample in before:
            latest[sample.state.name] = sample.state
        primary = [s.lsn for s in latest.values() if s.writable]
        replicas = [s.lsn for s in latest.values() if s.writable is False]
        if not primary or not replicas:
            return None
        return max(primary[0] - min(replicas), 0)

    def close(self) -> None:
        """Stop watching (idempotent)."""
        self.watch.stop()
        self.watch.view.close()
        self.controller.close()


def cluster_of(cluster: ClusterScenario | None) -> ClusterScenario:
    """``cluster``, or the one-line refusal when the stack has no replicated database."""
    if cluster is None:
        raise CheckFailed(NO_CLUSTER)
    return cluster
