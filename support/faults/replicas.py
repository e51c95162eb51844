"""The synchronous replica of a replicated database killed: the worst replica to lose, since with Patroni's
``synchronous_mode`` every commit on the primary waits for it until Patroni names another one."""

from __future__ import annotations

from dataclasses import dataclass

from support.cluster.controller import ClusterController, RoleWaitFailed
from support.core.waiting import WaitTimeout, wait_until
from support.faults.base import FaultHadNoEffect
from support.faults.cluster import NodeDown, _crash
from support.stack import database

__all__ = ["SynchronousReplicaDown", "synchronous_replica"]


def synchronous_replica(controller: ClusterController, timeout: float) -> str:
    """The replica whose flush acknowledges the primary's commits (``sync_state = 'sync'`` in the primary's
    ``pg_stat_replication``: PostgreSQL's own word, set by Patroni's ``synchronous_mode``), within ``timeout`` s."""

    def named() -> str | None:
        primary = controller.primary(timeout)
        try:
            with database.connect(controller.cluster.node(primary).dsn, 1.0) as conn, conn.cursor() as cur:
                cur.execute("SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'")
                row = cur.fetchone()
        except database.DatabaseError:
            return None
        return str(row[0]) if row else None

    try:
        return str(wait_until(named, timeout, "a synchronous replica", interval=0.2, retry_on=RoleWaitFailed))
    except WaitTimeout:
        raise FaultHadNoEffect(
            f"no replica is synchronous after {timeout:g} s (is synchronous = true in the stack file?): "
            f"{controller.describe()}"
        ) from None


@dataclass
class SynchronousReplicaDown(NodeDown):
    """The synchronous replica SIGKILLed (Patroni and its PostgreSQL) and kept down until healed (``timeout`` s);
    made with ``role="replica"``."""

    @property
    def name(self) -> str:
        return "synchronous replica killed"

    def inject(self) -> None:
        try:
            self.primary_before = self.controller.primary(self.timeout)
        except RoleWaitFailed as error:
            raise FaultHadNoEffect(str(error)) from None
        self.node = synchronous_replica(self.controller, self.timeout)
        _crash(self.services[self.node])
