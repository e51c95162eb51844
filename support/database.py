"""Reading and resetting the stack's database directly, through SQL, not through the API."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import psycopg2

__all__ = ["connect", "reset_users", "count_users", "rows_by_email", "activity_snapshot"]


@contextmanager
def connect(dsn: str, timeout: float = 5.0) -> Iterator["psycopg2.extensions.connection"]:
    """An autocommit connection that is always closed; statements time out after ``timeout`` s."""
    conn = psycopg2.connect(dsn, connect_timeout=max(2, int(timeout)), application_name="chaos-suite",
                            options=f"-c statement_timeout={int(timeout * 1000)}")
    try:
        conn.autocommit = True
        yield conn
    finally:
        conn.close()


def reset_users(dsn: str) -> None:
    """Empty the users table (ids restart at 1), so each scenario starts from the same state."""
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE users RESTART IDENTITY")


def count_users(dsn: str) -> int:
    """How many rows the users table holds."""
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM users")
        return cur.fetchone()[0]


def rows_by_email(dsn: str, emails: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{email: (name, email)}`` for the rows whose email is among ``emails``."""
    keys = list(emails)
    if not keys:
        return {}
    with connect(dsn, timeout=30.0) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, email FROM users WHERE email = ANY(%s)", (keys,))
        return {email: (name, email) for name, email in cur.fetchall()}


def activity_snapshot(dsn: str) -> list[dict]:
    """``pg_stat_activity`` of client backends: who is connected and what each is doing."""
    with connect(dsn, timeout=3.0) as conn, conn.cursor() as cur:
        cur.execute("""SELECT pid, usename, application_name, client_addr::text, state, wait_event_type,
                              wait_event, EXTRACT(EPOCH FROM now() - query_start)::float AS query_seconds,
                              left(query, 200)
                         FROM pg_stat_activity WHERE backend_type = 'client backend' ORDER BY pid""")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
