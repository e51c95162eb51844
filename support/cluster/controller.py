"""The cluster controller: roles by name ("the primary", "a replica") and the waits on them, with their deadlines.

Like the ``pctl`` of Patroni's own acceptance suite, but every wait is a deadline
in seconds on the clock (:func:`support.core.waiting.wait_until`), and the verdicts
are :class:`RoleWaitFailed` (an ``AssertionError``, as the checkers' verdicts are) with what was seen last.
"""

from __future__ import annotations

import time

from support.cluster.view import ClusterView
from support.core.waiting import WaitTimeout, wait_until
from support.stack import database
from support.stack.replicated import ReplicatedDatabase
from support.stack.workload import Workload

__all__ = ["ClusterController", "RoleWaitFailed"]


class RoleWaitFailed(AssertionError):
    """A role did not become what a step waited for in time; the message says what every node said last."""


class ClusterController:
    """Roles and waits on replicated database ``cluster``."""

    def __init__(self, cluster: ReplicatedDatabase) -> None:
        self.cluster = cluster
        self.view = ClusterView(cluster)

    def describe(self) -> str:
        """Every node's role and writability, on one line (for messages)."""
        parts = []
        for state in self.view.states():
            writes = {True: "writable", False: "read-only", None: "no answer"}[state.writable]
            parts.append(f"{state.name}: {state.role or 'no REST answer'}, {writes}")
        return "; ".join(parts)

    def primary(self, timeout: float) -> str:
        """The node that is primary now, waiting up to ``timeout`` s for there to be exactly one."""
        try:
            return str(wait_until(self.view.primary, timeout, "the cluster having one primary", interval=0.1))
        except WaitTimeout:
            raise RoleWaitFailed(f"the cluster has no single primary after {timeout:g} s: {self.describe()}") from None

    def replicas(self, timeout: float) -> list[str]:
        """The nodes other than the primary, in node order."""
        primary = self.primary(timeout)
        return [name for name in self.view.names if name != primary]

    def wait_new_primary(self, old: str, seconds: float) -> tuple[str, float]:
        """The node other than ``old`` that became primary within ``seconds``, and when (monotonic s)."""

        def promoted() -> str | None:
            now = self.view.primary()
            return now if now not in (None, old) else None

        try:
            name = wait_until(promoted, seconds, f"a node other than {old} becoming primary", interval=0.05)
        except WaitTimeout:
            raise RoleWaitFailed(
                f"no new primary within {seconds:g} s of the fault ({old} was primary): {self.describe()}"
            ) from None
        return str(name), time.monotonic()

    def wait_streaming(self, nodes: list[str], seconds: float) -> str:
        """Wait until every node of ``nodes`` streams from the primary, within ``seconds``; return the primary."""
        deadline = time.monotonic() + seconds

        def all_streaming() -> str | None:
            primary = self.view.primary()
            if primary is None or primary in nodes:
                return None
            return primary if set(nodes) <= set(self.view.streaming(primary)) else None

        try:
            return str(wait_until(all_streaming, max(deadline - time.monotonic(), 0.0), "streaming", interval=0.2))
        except WaitTimeout:
            raise RoleWaitFailed(
                f"{', '.join(nodes)} did not stream from a primary within {seconds:g} s: {self.describe()}"
            ) from None

    def wait_healthy_replicas(self, count: int, seconds: float) -> list[str]:
        """Wait until ``count`` replicas stream from the primary, within ``seconds``; return them."""

        def healthy() -> list[str]:
            primary = self.view.primary()
            return self.view.streaming(primary) if primary else []

        try:
            return wait_until(
                healthy, seconds, f"{count} healthy replicas", done=lambda seen: len(seen) >= count, interval=0.2
            )
        except WaitTimeout as error:
            raise RoleWaitFailed(
                f"the cluster did not have {count} healthy replicas within {seconds:g} s (streaming: "
                f"{', '.join(error.last or []) or 'none'}): {self.describe()}"  # type: ignore[arg-type]
            ) from None

    def wait_caught_up(self, seconds: float) -> dict[str, int | None]:
        """Wait until every node that answers has replayed the primary's WAL position of now; return each lsn."""
        primary = self.primary(seconds)
        target = self.view.sql_state(self.cluster.node(primary))[1] or 0

        def positions() -> dict[str, int | None]:
            return {n.name: self.view.sql_state(n)[1] for n in self.cluster.nodes}

        return wait_until(
            positions,
            seconds,
            "every node replaying up to the primary",
            done=lambda seen: all(lsn is None or lsn >= target for lsn in seen.values()),
            interval=0.2,
        )

    def keys_per_node(self, workload: Workload, keys: list[str], seconds: float) -> dict[str, set[str] | None]:
        """The acknowledged ``keys`` each node stores (None: it did not answer), once the nodes agree."""
        self.wait_caught_up(seconds)
        found: dict[str, set[str] | None] = {}
        for node in self.cluster.nodes:
            try:
                rows = database.rows_for_keys(node.dsn, workload, keys)
            except database.DatabaseError:
                found[node.name] = None
                continue
            found[node.name] = set(rows)
        return found

    def close(self) -> None:
        self.view.close()
