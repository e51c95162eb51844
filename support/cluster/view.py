"""One look at a replicated database's nodes: Patroni's role for each (REST), and whether each accepts writes (SQL).

Every probe goes straight to a node (never through HAProxy or the fault proxy) and
answers within about a second; a node that does not answer is ``None``, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from support.stack import database
from support.stack.replicated import ReplicatedDatabase, ReplicatedNode

__all__ = ["NodeState", "ClusterView", "PRIMARY_ROLES"]

#: what Patroni's REST API calls the leader (3.0 says "master", later versions "primary")
PRIMARY_ROLES = ("master", "primary", "leader")

_PROBE = "chaos-suite-cluster-probe"


@dataclass(frozen=True)
class NodeState:
    """What one node said: ``role`` per Patroni's REST (None: no answer), ``writable`` = not ``pg_is_in_recovery()``
    (None: PostgreSQL did not answer), ``lsn`` its current (primary) or replayed (replica) WAL position in bytes."""

    name: str
    role: str | None
    writable: bool | None
    lsn: int | None = None

    @property
    def primary(self) -> bool:
        """Patroni calls it the leader and its PostgreSQL accepts writes."""
        return self.role in PRIMARY_ROLES and self.writable is True


class ClusterView:
    """Probes of every node of ``cluster``, each within ``timeout`` s."""

    def __init__(self, cluster: ReplicatedDatabase, timeout: float = 1.0) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.cluster.nodes]

    def role(self, node: ReplicatedNode) -> str | None:
        """Patroni's role for ``node`` (``master``/``replica``/...), None when its REST API does not answer."""
        try:
            answer = self._http.get(node.rest_url + "/patroni")
            return str(answer.json().get("role")) if answer.status_code in (200, 503) else None
        except (httpx.HTTPError, ValueError):
            return None

    def sql_state(self, node: ReplicatedNode) -> tuple[bool | None, int | None]:
        """``(writable, lsn)`` of ``node`` by SQL; ``(None, None)`` when it does not answer."""
        try:
            with (
                database.connect(node.dsn, self.timeout, application_name=_PROBE, wait_for_slot=False) as conn,
                conn.cursor() as cur,
            ):
                cur.execute(
                    "SET statement_timeout = %s; SELECT NOT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                    "THEN pg_last_wal_replay_lsn() - '0/0' ELSE pg_current_wal_lsn() - '0/0' END",
                    (int(self.timeout * 1000),),
                )
                row = cur.fetchone()
        except database.DatabaseError:
            return None, None
        return (bool(row[0]), int(row[1]) if row[1] is not None else None) if row else (None, None)

    def state(self, node: ReplicatedNode) -> NodeState:
        """What ``node`` says right now."""
        writable, lsn = self.sql_state(node)
        return NodeState(node.name, self.role(node), writable, lsn)

    def states(self) -> list[NodeState]:
        """Every node's state, in node order."""
        return [self.state(node) for node in self.cluster.nodes]

    def primary(self) -> str | None:
        """The one node that is Patroni's leader and accepts writes; None when there is not exactly one."""
        primaries = [s.name for s in self.states() if s.primary]
        return primaries[0] if len(primaries) == 1 else None

    def streaming(self, primary: str) -> list[str]:
        """The nodes that stream from ``primary`` now (``pg_stat_replication``, state ``streaming``)."""
        node = self.cluster.node(primary)
        try:
            with (
                database.connect(node.dsn, self.timeout, application_name=_PROBE, wait_for_slot=False) as conn,
                conn.cursor() as cur,
            ):
                cur.execute("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
                return sorted(str(row[0]) for row in cur.fetchall())
        except database.DatabaseError:
            return []

    def close(self) -> None:
        self._http.close()
