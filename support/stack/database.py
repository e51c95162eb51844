"""Reading and resetting the stack's database directly, through SQL, not through the API."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import psycopg2

from support.core.waiting import Deadline
from support.stack.workload import Workload

__all__ = ["connect", "open_connection", "reset", "count_records", "rows_for_keys", "activity_snapshot"]

_ALL_SLOTS_BUSY = "sorry, too many clients already"


def open_connection(dsn: str, timeout: float = 5.0, **params: Any) -> "psycopg2.extensions.connection":
    """``psycopg2.connect``, retried for up to ``timeout`` s while every backend slot is taken for a moment.

    Under a slot-exhaustion fault, clients whose connects PostgreSQL is about to
    refuse each hold a backend slot while they authenticate, and a burst of them
    can take the superuser-reserved slots too ("sorry, too many clients
    already"). The suite's own connections wait that out; any other error, or
    the deadline, raises.
    """
    deadline = Deadline(timeout)
    while True:
        try:
            return psycopg2.connect(dsn, connect_timeout=max(2, int(timeout)), **params)
        except psycopg2.OperationalError as error:
            if _ALL_SLOTS_BUSY not in str(error) or deadline.expired:
                raise
        time.sleep(min(0.02, deadline.remaining()))


@contextmanager
def connect(dsn: str, timeout: float = 5.0) -> Iterator["psycopg2.extensions.connection"]:
    """An autocommit connection that is always closed; statements time out after ``timeout`` s."""
    conn = open_connection(dsn, timeout, application_name="chaos-suite",
                           options=f"-c statement_timeout={int(timeout * 1000)}")
    try:
        conn.autocommit = True
        yield conn
    finally:
        conn.close()


def reset(dsn: str, workload: Workload) -> None:
    """Empty what the workload writes (its ``reset_sql``), so each scenario starts from the same state."""
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(workload.reset_sql)


def count_records(dsn: str, workload: Workload) -> int:
    """How many records the database holds (the workload's ``count_sql``)."""
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(workload.count_sql)
        return int(cur.fetchone()[0])


def rows_for_keys(dsn: str, workload: Workload, keys: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``{key: compared column values as text}`` for the stored records among ``keys`` (``find_sql``)."""
    wanted = list(keys)
    if not wanted:
        return {}
    with connect(dsn, timeout=30.0) as conn, conn.cursor() as cur:
        cur.execute(workload.find_sql, {"keys": wanted})
        return {str(row[0]): tuple(str(v) for v in row[1:]) for row in cur.fetchall()}


def activity_snapshot(dsn: str) -> list[dict]:
    """``pg_stat_activity`` of client backends: who is connected and what each is doing."""
    with connect(dsn, timeout=3.0) as conn, conn.cursor() as cur:
        cur.execute("""SELECT pid, usename, application_name, client_addr::text, state, wait_event_type,
                              wait_event, EXTRACT(EPOCH FROM now() - query_start)::float AS query_seconds,
                              left(query, 200)
                         FROM pg_stat_activity WHERE backend_type = 'client backend' ORDER BY pid""")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

