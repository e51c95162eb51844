"""The suite's administrative (superuser) connections to the stack's PostgreSQL, for faults and their heals.

A fault is injected on :func:`admin_connection`, whose statements and lock
waits are bounded: a fault that cannot take effect fails fast. A heal must
win instead: :func:`run_heal` runs it on a connection with no statement
timeout (nothing of the suite's can cancel it), waits for each lock at most
``patience`` s at a time (``lock_timeout``) and retries until its deadline;
after the first polite wait it terminates the sessions that block it (a
service's stuck statements, a transaction left open), since a database left
broken would spoil every later scenario.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from support.core.waiting import Deadline
from support.stack.database import connect

__all__ = [
    "admin_connection",
    "heal_connection",
    "run_heal",
    "terminated_note",
    "HealTimeout",
    "api_role",
    "database_identity",
    "SUITE_APPLICATION",
    "HEAL_TIMEOUT",
    "HEAL_PATIENCE",
]

SUITE_APPLICATION = "chaos-suite-fault"
HEAL_APPLICATION = "chaos-suite-heal"
#: seconds a heal may take in all before it is reported as failed
HEAL_TIMEOUT = 30.0
#: seconds a heal waits for a lock before it terminates the sessions that hold it (above the
#: reference API's 1.5 s statement timeout: a service that cancels its own slow statements is never cut)
HEAL_PATIENCE = 5.0
#: what a retried heal waits out: a lock it could not get in time, or a deadlock PostgreSQL broke
_LOCK_ERRORS = (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected)


class HealTimeout(TimeoutError):
    """A heal could not get the locks it needs before its deadline, even after terminating their holders."""


def database_identity(dsn: str) -> str:
    """``host:port/dbname`` of a libpq DSN (no user, no password): which database a fault touched."""
    params = psycopg2.extensions.parse_dsn(dsn)
    return f"{params.get('host', 'localhost')}:{params.get('port', '5432')}/{params.get('dbname', '')}"


def api_role(app_dsn: str) -> str:
    """The database role in a libpq DSN (the role the suite made for the service)."""
    return psycopg2.extensions.parse_dsn(app_dsn)["user"]


def admin_connection(dsn: str, timeout: float = 5.0) -> AbstractContextManager[psycopg2.extensions.connection]:
    """An autocommit superuser connection, closed afterwards; statements and lock waits bounded by ``timeout`` s.

    It is read-write whatever ``default_transaction_read_only`` says, so it
    works while the read-only fault holds.
    """
    ms = int(timeout * 1000)
    return connect(
        dsn,
        timeout,
        application_name=SUITE_APPLICATION,
        settings={"statement_timeout": ms, "lock_timeout": ms, "default_transaction_read_only": "off"},
    )


def heal_connection(dsn: str, timeout: float = 5.0) -> AbstractContextManager[psycopg2.extensions.connection]:
    """An autocommit superuser connection for a heal (connecting within ``timeout`` s), closed afterwards.

    No statement timeout and no idle-transaction timeout, whatever the server
    or the role says; read-write while the read-only fault holds. Lock waits
    are the caller's to bound (:func:`run_heal` does).
    """
    return connect(
        dsn,
        timeout,
        application_name=HEAL_APPLICATION,
        settings={
            "statement_timeout": 0,
            "idle_in_transaction_session_timeout": 0,
            "default_transaction_read_only": "off",
        },
    )


def run_heal(
    dsn: str,
    what: str,
    work: Callable[[psycopg2.extensions.cursor], None],
    *,
    transaction: bool = True,
    timeout: float = HEAL_TIMEOUT,
    patience: float = HEAL_PATIENCE,
) -> list[int]:
    """Run ``work(cursor)`` on a :func:`heal_connection` until it succeeds; the pids of the sessions it terminated.

    ``work`` runs in one transaction (``transaction``) or in autocommit mode
    (for statements such as ``ALTER SYSTEM`` that refuse a transaction block).
    Each attempt waits at most ``patience`` s for a lock; the first waits
    politely, every later one while a watcher on a second connection
    terminates the sessions that block it (``pg_blocking_pids``). Attempts go
    on until ``timeout`` s have passed on the clock, then :class:`HealTimeout`
    says ``what`` could not be done, in one line. Any other error is raised as
    it is: retrying would not help.
    """
    deadline = Deadline(timeout)
    terminated: list[int] = []
    last: BaseException | None = None
    with heal_connection(dsn, max(1.0, min(5.0, timeout))) as conn:
        polite = True
        while True:
            wait_ms = max(1, int(min(patience, deadline.remaining()) * 1000))
            try:
                with _terminating_blockers(dsn, conn.get_backend_pid(), terminated, active=not polite):
                    conn.autocommit = not transaction
                    with conn.cursor() as cur:
                        cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{wait_ms}ms",))
                        work(cur)
                    conn.commit()
                return terminated
            except _LOCK_ERRORS as error:
                conn.rollback()
                last = error
            except BaseException:
                _rollback_quietly(conn)  # the heal's own error is the one to show
                raise
            if deadline.expired:
                shown = " ".join(str(last).split())
                cut = f" after terminating {len(terminated)} sessions that blocked it" if terminated else ""
                raise HealTimeout(f"{what} did not succeed within {timeout:g} s{cut}: {shown}") from last
            polite = False


def terminated_note(pids: list[int]) -> str:
    """One line for the evidence on the sessions a heal terminated (empty when none)."""
    if not pids:
        return ""
    return f"terminated {len(pids)} session(s) that blocked the heal: pid {', '.join(map(str, pids))}"


def _rollback_quietly(conn: psycopg2.extensions.connection) -> None:
    with suppress(psycopg2.Error):  # a broken connection has nothing left to roll back
        conn.rollback()


@contextmanager
def _terminating_blockers(
    dsn: str, pid: int, terminated: list[int], active: bool, interval: float = 0.02
) -> Iterator[None]:
    """While the block runs (when ``active``), terminate every session that blocks backend ``pid``, every
    ``interval`` s, adding their pids to ``terminated``; a watcher that cannot connect leaves the heal to its
    lock timeout."""
    if not active:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        try:
            with admin_connection(dsn) as conn, conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute(
                        "SELECT blocker, pg_terminate_backend(blocker) FROM unnest(pg_blocking_pids(%s)) AS blocker",
                        (pid,),
                    )
                    terminated.extend(
                        blocker for blocker, signalled in cur.fetchall() if signalled and blocker not in terminated
                    )
                    stop.wait(interval)
        except psycopg2.Error:
            pass  # the heal's own lock timeout still bounds the attempt

    watcher = threading.Thread(target=watch, name="chaos-heal-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(5.0)
