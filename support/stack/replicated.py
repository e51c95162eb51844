"""A replicated database (``kind = "patroni"``): its settings in the stack file, and the nodes a backend hands out.

``[services.NAME] kind = "patroni"`` is one logical PostgreSQL made of
``nodes`` Patroni-managed PostgreSQL servers (one primary, the others streaming
replicas) that elect their leader through an etcd cluster of ``etcd_members``
members, with an HAProxy in front that routes to the current primary by
Patroni's REST checks. The services that ``uses`` it reach that HAProxy (through
the fault proxy), as they would reach any PostgreSQL. :class:`ReplicationOptions`
is the table, :class:`ReplicatedDatabase` what the running backend offers the
cluster controller (:mod:`support.cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ReplicationOptions", "ReplicatedNode", "ReplicatedDatabase", "REPLICATION_FIELDS", "parse_replication"]

#: the fields of a ``kind = "patroni"`` table besides ``kind``, ``databases`` and ``depends_on``
REPLICATION_FIELDS = (
    "nodes",
    "etcd_members",
    "synchronous",
    "ttl",
    "loop_wait",
    "retry_timeout",
    "check_interval",
    "failsafe",
    "synchronous_strict",
)


@dataclass(frozen=True)
class ReplicationOptions:
    """How the replicated database is run.

    ``nodes`` PostgreSQL servers (2-5) and ``etcd_members`` etcd members (1 or 3);
    ``synchronous``: Patroni's ``synchronous_mode`` (a commit waits for one
    replica); ``ttl``, ``loop_wait``, ``retry_timeout``: Patroni's leader-lock
    timings in seconds (the leader key expires ``ttl`` s after the primary's last
    renewal, which it tries every ``loop_wait`` s and gives up on after
    ``retry_timeout`` s); ``check_interval``: seconds between HAProxy's health
    checks of each node (``/primary``, ``/replica``); ``failsafe``: Patroni's ``failsafe_mode`` (a primary that
    loses etcd but reaches every other node keeps accepting writes instead of stepping down);
    ``synchronous_strict``: Patroni's ``synchronous_mode_strict`` (with no replica left to be synchronous, commits
    wait instead of going on unreplicated).
    """

    nodes: int = 3
    etcd_members: int = 3
    synchronous: bool = True
    ttl: int = 10
    loop_wait: int = 1
    retry_timeout: int = 3
    check_interval: float = 0.5
    failsafe: bool = False
    synchronous_strict: bool = False

    @property
    def failover_floor(self) -> float:
        """Seconds a failover cannot beat after the primary dies: its leader key lives ``ttl`` s."""
        return float(self.ttl)

    @property
    def failover_bound(self) -> float:
        """Seconds within which Patroni promises a new leader: the key expires (``ttl``), a replica notices at its
        next loop (``loop_wait``) and promotes; HAProxy sees it at its next check."""
        return self.ttl + self.loop_wait + self.check_interval


def parse_replication(table: dict[str, Any], where: str) -> ReplicationOptions:
    """The options of a ``kind = "patroni"`` table; raises ValueError with one line naming the field."""
    options = ReplicationOptions()
    values: dict[str, Any] = {}
    for name in REPLICATION_FIELDS:
        if name not in table:
            continue
        value, default = table[name], getattr(options, name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where} {name}={value!r} must be true or false")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{where} {name}={value!r} must be a number greater than 0")
        elif isinstance(default, int) and not isinstance(value, int):
            raise ValueError(f"{where} {name}={value!r} must be a whole number")
        values[name] = value
    options = ReplicationOptions(**values)
    if not 2 <= options.nodes <= 5:
        raise ValueError(f"{where} nodes={options.nodes} must be 2 to 5 (one primary and its replicas)")
    if options.etcd_members not in (1, 3):
        raise ValueError(f"{where} etcd_members={options.etcd_members} must be 1 or 3")
    if options.loop_wait + 2 * options.retry_timeout > options.ttl:
        raise ValueError(
            f"{where} ttl={options.ttl} must be at least loop_wait + 2 * retry_timeout "
            f"({options.loop_wait + 2 * options.retry_timeout}): Patroni's rule, or a primary cut off from etcd "
            "could still hold its lock while another node is elected"
        )
    return options


@dataclass(frozen=True)
class ReplicatedNode:
    """One PostgreSQL server of the cluster: its service name, Patroni's REST URL and a superuser DSN, both direct."""

    name: str
    rest_url: str
    dsn: str


@dataclass(frozen=True)
class ReplicatedDatabase:
    """What a backend offers about a running replicated database (the cluster controller's input).

    ``name`` is the service the stack file declared (the HAProxy the clients use);
    ``nodes`` the PostgreSQL servers; ``etcd`` the etcd members' service names and ``etcd_urls`` their client URLs;
    ``read_dsn`` a superuser DSN of HAProxy's replica frontend; ``database`` the
    workload's database on each node.
    """

    name: str
    options: ReplicationOptions
    nodes: tuple[ReplicatedNode, ...]
    etcd: tuple[str, ...]
    etcd_urls: tuple[str, ...]
    database: str
    read_dsn: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def node(self, name: str) -> ReplicatedNode:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise LookupError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")
