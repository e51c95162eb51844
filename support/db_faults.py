"""Faults injected through an administrative connection to the stack's PostgreSQL."""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg2

__all__ = ["TableLock"]


@dataclass
class TableLock:
    """Hold an ``ACCESS EXCLUSIVE`` lock on a table: every statement touching it waits."""

    dsn: str
    table: str = "users"
    instant: bool = False
    name: str = "table lock"
    _conn: object = field(default=None, repr=False)

    @property
    def target(self) -> str:
        return f"postgres ({self.table} table)"

    def inject(self) -> None:
        conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="chaos-suite-lock")
        self._conn = conn
        with conn.cursor() as cur:  # psycopg2 opened a transaction: the lock lives until rollback
            cur.execute("SET lock_timeout = '5s'")
            cur.execute(f'LOCK TABLE "{self.table}" IN ACCESS EXCLUSIVE MODE')

    def heal(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.rollback()
            except psycopg2.Error:
                pass  # a broken connection took its lock with it: healed either way
            finally:
                conn.close()
