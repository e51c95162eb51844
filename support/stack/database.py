"""The suite's own SQL: the one place it opens PostgreSQL connections, and reading and resetting the database.

Every connection the suite opens (readiness probes, faults, read-backs, the
backends' set-up) goes through :func:`open_connection`, or :func:`connect` for
one closed afterwards; what differs between them is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from support.core.waiting import WaitTimeout, retry
from support.stack.workload import Workload

__all__ = [
    "connect",
    "open_connection",
    "DatabaseError",
    "reset",
    "count_records",
    "rows_for_keys",
    "activity_snapshot",
]

#: what the driver raises, whatever went wrong: what a wait for the database waits out
DatabaseError = psycopg2.Error

_ALL_SLOTS_BUSY = "sorry, too many clients already"


def _all_slots_busy(error: BaseException) -> bool:
    return isinstance(error, psycopg2.OperationalError) and _ALL_SLOTS_BUSY in str(error)


def _options(settings: Mapping[str, object]) -> str:
    """libpq ``options``: ``-c name=value`` for each session setting (spaces escaped as libpq wants)."""
    return " ".join(
        f"-c {name}=" + str(value).replace("\\", "\\\\").replace(" ", "\\ ") for name, value in settings.items()
    )


def open_connection(
    dsn: str,
    timeout: float = 5.0,
    *,
    application_name: str = "chaos-suite",
    autocommit: bool = False,
    settings: Mapping[str, object] | None = None,
    wait_for_slot: bool = True,
) -> psycopg2.extensions.connection:
    """A new connection to ``dsn``, which the caller closes; the suite's only ``psycopg2.connect``.

    ``timeout`` s bound the connect (libpq counts whole seconds, at least 2)
    and, with ``wait_for_slot``, the wait for a free backend slot: under a
    slot-exhaustion fault, clients whose connects PostgreSQL is about to
    refuse each hold a slot while they authenticate, and a burst of them can
    take the superuser-reserved slots too ("sorry, too many clients
    already"). The suite's own connections wait that out; any other error, or
    the deadline, raises the driver's error. A probe, or a fault that takes
    slots until it is refused, passes ``wait_for_slot=False``. ``settings``
    are session settings (``{"statement_timeout": 5000}``, in the server's
    units); ``autocommit`` is off by default, as in psycopg2.
    """
    params: dict[str, object] = {"connect_timeout": max(2, int(timeout)), "application_name": application_name}
    if settings:
        params["options"] = _options(settings)

    def attempt() -> psycopg2.extensions.connection:
        return psycopg2.connect(dsn, **params)

    if wait_for_slot:
        try:
            conn = retry(attempt, timeout, "a free connection slot", retry_on=_all_slots_busy, interval=0.02)
        except WaitTimeout as waited:
            raise (waited.error or waited) from None  # the driver's own error, as for any other failure to connect
    else:
        conn = attempt()
    if autocommit:
        conn.autocommit = True
    return conn


@contextmanager
def connect(
    dsn: str,
    timeout: float = 5.0,
    *,
    application_name: str = "chaos-suite",
    autocommit: bool = True,
    settings: Mapping[str, object] | None = None,
    wait_for_slot: bool = True,
) -> Iterator[psycopg2.extensions.connection]:
    """:func:`open_connection`, always closed afterwards; autocommit unless told otherwise.

    Without ``settings``, statements time out after ``timeout`` s; ``settings``
    replace that (name ``statement_timeout`` in them to keep a bound).
    """
    bounded = settings if settings is not None else {"statement_timeout": int(timeout * 1000)}
    conn = open_connection(
        dsn,
        timeout,
        application_name=application_name,
        autocommit=autocommit,
        settings=bounded,
        wait_for_slot=wait_for_slot,
    )
    try:
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
    """``{key: compared column values as text}`` for the stored records among ``keys`` (each write's ``find_sql``)."""
    wanted = list(keys)
    if not wanted:
        return {}
    found: dict[str, tuple[str, ...]] = {}
    with connect(dsn, timeout=30.0) as conn, conn.cursor() as cur:
        for find_sql in dict.fromkeys(op.find_sql for op in workload.writes()):  # several writes may share one
            cur.execute(find_sql, {"keys": wanted})
            found.update((str(row[0]), tuple(str(v) for v in row[1:])) for row in cur.fetchall())
    return found


def activity_snapshot(dsn: str) -> list[dict]:
    """``pg_stat_activity`` of client backends: who is connected and what each is doing."""
    with connect(dsn, timeout=3.0) as conn, conn.cursor() as cur:
        cur.execute("""SELECT pid, usename, application_name, client_addr::text, state, wait_event_type,
                              wait_event, EXTRACT(EPOCH FROM now() - query_start)::float AS query_seconds,
                              left(query, 200)
                         FROM pg_stat_activity WHERE backend_type = 'client backend' ORDER BY pid""")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
