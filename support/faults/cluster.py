"""Faults on a replicated database's roles: its primary or a replica killed, stopped or frozen, a switchover,
replication paused, etcd without a quorum, the primary cut off from the cluster, and a replica of a balanced
service killed.

Each resolves its role ("the primary") when injected, through the cluster
controller (:mod:`support.cluster.controller`), and names the node it hit in its
``target``. Killed nodes stay down, as a host that died does, until their heal
starts them again (at the end of the scenario at the latest).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import httpx

from support.cluster.controller import ClusterController
from support.faults.base import Fault, FaultHadNoEffect
from support.proxy.link import Link
from support.stack import database
from support.stack.services import Service

__all__ = [
    "KillBehindReplicas",
    "NodeDown",
    "NodePause",
    "PrimaryCutOff",
    "Switchover",
    "ReplayPaused",
    "EtcdQuorumLost",
    "ReplicaDown",
]


def _crash(service: Service) -> None:
    """SIGKILL every process of ``service`` and keep it down (its restart policy would bring it back at once)."""
    crash = getattr(service, "crash", None)
    if crash is not None:
        crash()
    else:
        service.kill(signal.SIGKILL)
        service.stop(0.0)


def _signal_server(service: Service, pid: int, sig: int) -> None:
    """``sig`` to process ``pid`` of node ``service``'s PostgreSQL, the PID as PostgreSQL reports it
    (``pg_stat_activity``, ``pg_stat_replication``): the node maps it to a process it can signal (a container's
    PIDs are its namespace's). A node that does not say how runs on this host: ``os.kill``. Raises
    ProcessLookupError when the process is gone."""
    signal_server = getattr(service, "signal_server_process", None)
    if signal_server is not None:
        signal_server(pid, sig)
    else:
        os.kill(pid, sig)


def _thaw(service: Service, pids: list[int]) -> None:
    """SIGCONT to each of ``pids`` of ``service``'s PostgreSQL; those gone (their node died) need none."""
    for pid in pids:
        try:
            _signal_server(service, pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@dataclass
class _RoleNode(Fault):
    """A fault on the node holding ``role`` (``primary`` or ``replica``, the first replica), resolved when injected:
    ``node`` is the one it hit, ``primary_before`` the primary then (what "a new primary" is measured against)."""

    controller: ClusterController
    services: dict[str, Service]
    role: str
    timeout: float
    node: str = ""
    primary_before: str = ""

    @property
    def target(self) -> str:
        return self.node or f"the {self.role}"

    def _resolve(self) -> Service:
        """Find the node holding the role now (within ``timeout`` s) and return its service."""
        self.primary_before = self.controller.primary(self.timeout)
        self.node = self.primary_before if self.role == "primary" else self.controller.replicas(self.timeout)[0]
        return self.services[self.node]


@dataclass
class NodeDown(_RoleNode):
    """The node holding ``role`` killed (SIGKILL: ``how="kill"``) or stopped (Patroni's graceful stop, which hands
    the leader key over: ``how="stop"``); it stays down until healed (``timeout`` s)."""

    how: str = "kill"
    instant: bool = True

    @property
    def name(self) -> str:
        return f"{self.role} {'killed' if self.how == 'kill' else 'stopped'}"

    def inject(self) -> None:
        service = self._resolve()
        if self.how == "kill":
            _crash(service)
        else:
            service.stop(self.timeout)

    def heal(self) -> None:
        if self.node:
            self.services[self.node].start(self.timeout)


@dataclass
class NodePause(_RoleNode):
    """The node holding ``role`` frozen (SIGSTOP to Patroni and its PostgreSQL); thawed by the heal."""

    @property
    def name(self) -> str:
        return f"{self.role} paused"

    def inject(self) -> None:
        self._resolve().pause()

    def heal(self) -> None:
        if self.node:
            self.services[self.node].resume()


@dataclass
class Switchover(Fault):
    """A planned switchover (Patroni's REST ``POST /switchover``) from the primary to a replica; nothing to heal."""

    controller: ClusterController
    timeout: float
    instant: bool = True
    name: str = "switchover"
    primary_before: str = ""

    @property
    def target(self) -> str:
        return f"from {self.primary_before}" if self.primary_before else "the primary"

    def inject(self) -> None:
        self.primary_before = self.controller.primary(self.timeout)
        leader = self.controller.cluster.node(self.primary_before)
        # no candidate: Patroni picks a healthy one (in synchronous mode only the synchronous standby may take over)
        answer = httpx.post(leader.rest_url + "/switchover", json={"leader": self.primary_before}, timeout=self.timeout)
        if answer.status_code != 200:
            raise RuntimeError(f"Patroni refused the switchover ({answer.status_code}): {answer.text.strip()[:200]}")

    def heal(self) -> None:
        """A switchover is not undone: the new primary stays."""


@dataclass
class ReplayPaused(Fault):
    """WAL replay stopped on every replica: their startup process (the one that applies WAL) frozen with SIGSTOP,
    so they receive and flush WAL but do not apply it. (``pg_wal_replay_pause()`` would not hold: Patroni 3 resumes
    a paused replay on PostgreSQL 14+ at its next loop, within ``loop_wait`` s.)"""

    controller: ClusterController
    timeout: float
    services: dict[str, Service]
    name: str = "replication lag"
    replicas: list[str] = field(default_factory=list)
    primary_before: str = ""
    #: the frozen startup process of each replica, by node (its PID as PostgreSQL reports it)
    frozen: dict[str, int] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return ", ".join(self.replicas) or "the replicas"

    def inject(self) -> None:
        self.primary_before = self.controller.primary(self.timeout)
        self.replicas = self.controller.replicas(self.timeout)
        for name in self.replicas:
            dsn = self.controller.cluster.node(name).dsn
            with database.connect(dsn, self.timeout) as conn, conn.cursor() as cur:
                cur.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'")
                row = cur.fetchone()
            if row is None:
                raise FaultHadNoEffect(f"{name} replays no WAL (it has no startup process): it is not a replica")
            self.frozen[name] = int(row[0])
            _signal_server(self.services[name], int(row[0]), signal.SIGSTOP)

    def heal(self) -> None:
        self.mark_effect_over()
        for name, pid in self.frozen.items():
            _thaw(self.services[name], [pid])


@dataclass
class EtcdQuorumLost(Fault):
    """A majority of the etcd members frozen (SIGSTOP): Patroni can renew no leader key, so its primary demotes."""

    services: dict[str, Service]
    members: tuple[str, ...]
    name: str = "etcd quorum lost"
    frozen: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return ", ".join(self.frozen) or "etcd"

    def inject(self) -> None:
        for name in self.members[: len(self.members) // 2 + 1]:
            self.frozen.append(name)
            self.services[name].pause()

    def heal(self) -> None:
        self.mark_effect_over()
        for name in self.frozen:
            self.services[name].resume()


@dataclass
class ReplicaDown(Fault):
    """One replica of a balanced service killed (SIGKILL) and kept down until healed (``timeout`` s)."""

    service: Service
    timeout: float
    instant: bool = True
    name: str = "replica killed"

    @property
    def target(self) -> str:
        return self.service.name

    def inject(self) -> None:
        _crash(self.service)

    def heal(self) -> None:
        self.service.start(self.timeout)


@dataclass
class _OnPrimary(Fault):
    """A fault on the node that is primary when it is injected (found within ``timeout`` s): ``node`` and
    ``primary_before`` name it (what "a new primary" and "the old primary" are measured against)."""

    controller: ClusterController
    timeout: float
    node: str = field(default="", kw_only=True)
    primary_before: str = field(default="", kw_only=True)

    @property
    def target(self) -> str:
        return self.node or "the primary"

    def _resolve_primary(self) -> str:
        self.primary_before = self.node = self.controller.primary(self.timeout)
        return self.node


@dataclass
class KillBehindReplicas(_OnPrimary):
    """The primary killed while its replicas are ``behind`` s behind: its WAL senders frozen (SIGSTOP) for
    ``behind`` s, so no replica receives what it commits, then the primary SIGKILLed (senders included) and kept
    down. With asynchronous replication the writes of those seconds were acknowledged by the primary alone;
    with synchronous replication none of them were acknowledged. (Freezing the replicas' receivers would not
    do: the kernel's socket buffers would hold the WAL for them.)"""

    services: dict[str, Service]
    behind: float
    instant: bool = True
    name: str = "primary killed with its replicas behind"
    frozen: list[int] = field(default_factory=list)

    def inject(self) -> None:
        self._resolve_primary()
        dsn = self.controller.cluster.node(self.node).dsn
        with database.connect(dsn, self.timeout) as conn, conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_replication")
            self.frozen = [int(row[0]) for row in cur.fetchall()]
        if not self.frozen:
            raise FaultHadNoEffect(f"{self.node} sends WAL to no replica: nothing to fall behind")
        try:
            for pid in self.frozen:
                _signal_server(self.services[self.node], pid, signal.SIGSTOP)
            time.sleep(self.behind)  # the replicas falling behind is the fault itself, not a synchronisation
            _crash(self.services[self.node])
        finally:
            _thaw(self.services[self.node], self.frozen)

    def heal(self) -> None:
        if self.node:
            _thaw(self.services[self.node], self.frozen)
            self.services[self.node].start(self.timeout)


@dataclass
class PrimaryCutOff(_OnPrimary):
    """The primary partitioned from the rest of the cluster: every proxied link with its node at one end disabled
    (its Patroni's links to each etcd member, the other nodes' streaming replication from it and their calls to
    its Patroni REST API; open connections cut, new ones refused). What does not go through the fault proxy stays:
    HAProxy still checks it and routes the API's writes to it while it calls itself primary, and the suite still
    probes it directly. ``links`` are the stack's proxied links; the heal enables every link it disabled."""

    links: dict[tuple[str, str], Link]
    name: str = "primary cut off"
    cut: list[Link] = field(default_factory=list)

    def inject(self) -> None:
        self._resolve_primary()
        self.cut = [link for (one, other), link in self.links.items() if self.node in (one, other)]
        if not self.cut:
            raise FaultHadNoEffect(
                f"{self.node} has no proxied link to cut: the replicated database's links go through the fault "
                "proxy (on the process backend, and on Docker with docker_network=host)"
            )
        for link in self.cut:
            link.client.set_enabled(link.name, False)

    def heal(self) -> None:
        """Enable every link the cut disabled: each is tried even when one fails (the first error is raised after
        them all), so one proxy call that fails leaves no other link of the node down."""
        self.mark_effect_over()
        errors = []
        for link in self.cut:
            try:
                link.client.set_enabled(link.name, True)
            except Exception as error:  # noqa: BLE001 - the other links are healed first
                errors.append(error)
        if errors:
            raise errors[0]
