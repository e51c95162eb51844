"""Faults injected through an administrative (superuser) connection to the stack's PostgreSQL.

Each fault has ``inject()`` and an idempotent ``heal()`` that is also safe
after an ``inject()`` that failed half-way: a fault notes what it changed
before changing it, and ``heal()`` undoes only that. Every heal that changes
the database goes through :func:`support.faults.admin.run_heal`, so that a
service's stuck statements cannot make it fail (it terminates them after a
polite wait). Faults held for a while record ``active_since`` (monotonic s:
``inject()`` has made the fault take effect) and ``active_until`` (monotonic
s: ``heal()`` began), the window in which its effect is certain (see :mod:`support.checks.during_faults`).

How each fault is made, and how faithful it is:

* :class:`TerminateBackends` - ``pg_terminate_backend`` of every session of
  the API's database role, then a wait until each has exited. The role, not the
  ``application_name``, selects the sessions: the suite creates the role for
  the service whatever it is, while an ``application_name`` is a convention of
  the reference API (which sets ``users-api``: both select the same sessions).
* :class:`support.faults.slots.SlotExhaustion` - every connection slot taken (its own module).
* :class:`TableLock` - an ``ACCESS EXCLUSIVE`` lock held in an open transaction.
* :class:`ReadOnlyDatabase` - ``ALTER SYSTEM SET default_transaction_read_only
  = on`` and a configuration reload. ``ALTER DATABASE ... SET`` would reach only
  new sessions, and making existing ones reconnect (terminating them) adds a
  second fault; worse, sessions opened while the database default is on keep
  it after ``ALTER DATABASE ... RESET``. A reloaded server-wide default reaches
  every existing session at its next statement, and the heal (``ALTER SYSTEM
  RESET`` + reload) reaches them all again. Transactions already open finish
  read-write. It is cluster-wide: the stack's cluster serves only the service
  (superusers can still write with ``SET transaction_read_only = off``).
* :class:`SlowStatements` - a row-level security policy on the table whose
  condition calls a function that sleeps ``delay`` seconds once per statement
  (a per-session marker holds the statement's start time). Every statement of
  a non-superuser role that reads or writes a row of the table waits ``delay``
  inside the server, as a slow disk or a bad plan would: the session's
  ``statement_timeout`` counts it, locks are held through it. Statements that
  touch no row of the table (``SELECT 1``, pre-ping, a read of a missing id)
  are not slowed; superusers (the suite's own checks) bypass it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql

from support.core.waiting import wait_until
from support.faults.admin import HEAL_TIMEOUT, admin_connection, database_identity, run_heal, terminated_note
from support.faults.base import Fault, FaultHadNoEffect
from support.stack.database import open_connection

__all__ = ["TableLock", "TerminateBackends", "ReadOnlyDatabase", "SlowStatements", "DELAY_POLICY"]

_DELAY_FUNCTION = "chaos_suite_delay"
#: the row-level security policy that slows statements (its residue heal looks for it)
DELAY_POLICY = "chaos_suite_slow"
_DELAY_MARKER = "chaos_suite.slept_at"


@dataclass
class TableLock(Fault):
    """Hold an ``ACCESS EXCLUSIVE`` lock on a table: every statement touching it waits."""

    dsn: str
    table: str = "users"
    instant: bool = False
    name: str = "table lock"
    active_since: float | None = None
    active_until: float | None = None
    _conn: Any = field(default=None, repr=False)  # the psycopg2 connection that holds the lock

    @property
    def target(self) -> str:
        return f"postgres ({self.table} table)"

    def inject(self) -> None:
        conn = open_connection(self.dsn, 5.0, application_name="chaos-suite-lock")
        self._conn = conn
        with conn.cursor() as cur:  # psycopg2 opened a transaction: the lock lives until rollback
            cur.execute("SET lock_timeout = '5s'")
            cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(self.table)))
        self.active_since = time.monotonic()

    def heal(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.active_until = time.monotonic()
            try:
                conn.rollback()
            except psycopg2.Error:
                pass  # a broken connection took its lock with it: healed either way
            finally:
                conn.close()


@dataclass
class TerminateBackends(Fault):
    """Terminate every session of ``role`` (optionally only those named ``application_name``): an instant fault.

    ``active_since`` is when every session had been signalled (monotonic s);
    ``inject`` returns once they have all exited (at most ``timeout`` s later).
    ``terminated`` says how many there were; :class:`FaultHadNoEffect` is raised
    when there was none. Nothing to heal: the service must reconnect by itself.
    """

    dsn: str
    role: str
    application_name: str | None = None
    timeout: float = 5.0
    instant: bool = True
    name: str = "sessions terminated"
    terminated: int = 0
    active_since: float | None = None

    @property
    def target(self) -> str:
        named = f", {self.application_name}" if self.application_name else ""
        return f"postgres (sessions of {self.role}{named})"

    def inject(self) -> None:
        query = (
            "SELECT pid, pg_terminate_backend(pid), extract(epoch FROM clock_timestamp())::float"
            " FROM pg_stat_activity"
            " WHERE usename = %(role)s AND pid <> pg_backend_pid()"
            " AND (%(app)s::text IS NULL OR application_name = %(app)s)"
        )
        with admin_connection(self.dsn, self.timeout + 1) as conn, conn.cursor() as cur:
            # signal them all first and wait afterwards: pg_terminate_backend's own wait polls in
            # 100 ms steps, one session after the other. It is false, with a warning, for a
            # session that ended by itself meanwhile (the service closing its other connections).
            cur.execute(query, {"role": self.role, "app": self.application_name})
            wall, now = time.time(), time.monotonic()
            results = cur.fetchall()
            if not results:
                raise FaultHadNoEffect(f"no session of role {self.role} was connected to terminate")
            # the moment of the last signal, on the server's clock (the machine's wall clock) moved
            # onto the monotonic one: the answer may reach this process much later on a busy machine
            self.active_since = min(now, now - (wall - max(signalled_at for _, _, signalled_at in results)))
            pids = [pid for pid, _, _ in results]

            def exited() -> bool:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
                return cur.fetchone()[0] == 0

            wait_until(
                exited, self.timeout, f"the {len(pids)} terminated sessions of {self.role} exiting", interval=0.005
            )
        self.terminated = sum(1 for _, signalled, _ in results if signalled)

    def heal(self) -> None:
        """Nothing to undo."""


def _conf_load_time(cur) -> object:
    cur.execute("SELECT pg_conf_load_time()")
    return cur.fetchone()[0]


def _reload(cur, timeout: float) -> None:
    """Reload the configuration and return once the server has re-read it and signalled every backend.

    The postmaster signals the backends after re-reading the files; this session
    re-reads them too, and its ``pg_conf_load_time()`` moves when it has.
    """
    before = _conf_load_time(cur)
    cur.execute("SELECT pg_reload_conf()")
    wait_until(
        lambda: _conf_load_time(cur) != before, timeout, "PostgreSQL reloading its configuration", interval=0.005
    )


@dataclass
class ReadOnlyDatabase(Fault):
    """Every new transaction of every session is read-only (``default_transaction_read_only``, server-wide).

    Existing sessions take the new default at their next statement; ``heal``
    makes them read-write again the same way (within ``heal_timeout`` s). A
    write then fails with SQLSTATE 25006 (``read_only_sql_transaction``) while
    reads go on.
    """

    dsn: str
    timeout: float = 5.0
    heal_timeout: float = HEAL_TIMEOUT
    instant: bool = False
    name: str = "read-only"
    target: str = "postgres"
    active_since: float | None = None
    active_until: float | None = None
    _changed: bool = field(default=False, repr=False)

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :mod:`support.faults.residues`)."""
        return {"kind": "read_only", "database": database_identity(self.dsn)}

    def inject(self) -> None:
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            self._changed = True  # before the statement: its answer may be lost after it took effect
            cur.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            _reload(cur, self.timeout)
        self.active_since = time.monotonic()

    def heal(self) -> None:
        if not self._changed:
            return
        self.mark_effect_over()

        def reset(cur) -> None:
            cur.execute("ALTER SYSTEM RESET default_transaction_read_only")
            _reload(cur, self.timeout)

        terminated = run_heal(
            self.dsn, "resetting the server-wide read-only default", reset, transaction=False, timeout=self.heal_timeout
        )
        self.heal_note = terminated_note(terminated)
        self._changed = False


@dataclass
class SlowStatements(Fault):
    """Every statement of a non-superuser that touches a row of ``table`` waits ``delay`` seconds first.

    A row-level security policy (permissive, true, for every role) calls a
    function that sleeps once per statement; row security is enabled and
    forced on the table for the time of the fault (so its owner is slowed
    too) and set back as it was on ``heal``. The fault's DDL waits at most
    ``timeout`` s for the table's lock; the heal's wins within ``heal_timeout``
    s, terminating the sessions that hold the table if it must.
    """

    dsn: str
    delay: float
    table: str = "users"
    timeout: float = 10.0
    heal_timeout: float = HEAL_TIMEOUT
    instant: bool = False
    active_since: float | None = None
    active_until: float | None = None
    _was: tuple[bool, bool] | None = field(default=None, repr=False)
    _changed: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return f"statements slowed by {self.delay * 1000:g} ms"

    @property
    def target(self) -> str:
        return f"postgres ({self.table} table)"

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :mod:`support.faults.residues`)."""
        return {
            "kind": "slow_statements",
            "database": database_identity(self.dsn),
            "table": self.table,
            "was": None if self._was is None else list(self._was),
        }

    def inject(self) -> None:
        table = sql.Identifier(self.table)
        body = sql.SQL("""
            CREATE OR REPLACE FUNCTION public.{fn}() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                -- once per statement, however many rows it touches
                IF current_setting({marker}, true) IS DISTINCT FROM statement_timestamp()::text THEN
                    PERFORM set_config({marker}, statement_timestamp()::text, false);
                    PERFORM pg_sleep({delay});
                END IF;
                RETURN true;
            END $$""").format(
            fn=sql.Identifier(_DELAY_FUNCTION), marker=sql.Literal(_DELAY_MARKER), delay=sql.Literal(float(self.delay))
        )
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass", (self.table,)
            )
            was = cur.fetchone()
            conn.autocommit = False  # one transaction: all of it takes effect, or none
            self._was, self._changed = (bool(was[0]), bool(was[1])), True
            cur.execute(body)
            cur.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION public.{}() TO PUBLIC").format(sql.Identifier(_DELAY_FUNCTION))
            )
            cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(DELAY_POLICY), table))
            cur.execute(
                sql.SQL(
                    "CREATE POLICY {} ON {} AS PERMISSIVE FOR ALL TO PUBLIC USING (public.{}())"
                    " WITH CHECK (public.{}())"
                ).format(
                    sql.Identifier(DELAY_POLICY),
                    table,
                    sql.Identifier(_DELAY_FUNCTION),
                    sql.Identifier(_DELAY_FUNCTION),
                )
            )
            cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY").format(table))
            conn.commit()
        self.active_since = time.monotonic()

    def heal(self) -> None:
        if not self._changed:
            return
        self.mark_effect_over()
        table = sql.Identifier(self.table)
        enabled, forced = self._was or (False, False)

        def restore(cur) -> None:  # one transaction: all of it, or none
            cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(DELAY_POLICY), table))
            cur.execute(
                sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY, {} ROW LEVEL SECURITY").format(
                    table, sql.SQL("ENABLE" if enabled else "DISABLE"), sql.SQL("FORCE" if forced else "NO FORCE")
                )
            )
            cur.execute(sql.SQL("DROP FUNCTION IF EXISTS public.{}()").format(sql.Identifier(_DELAY_FUNCTION)))

        terminated = run_heal(
            self.dsn, f"dropping the statement-slowing policy on table {self.table}", restore, timeout=self.heal_timeout
        )
        self.heal_note = terminated_note(terminated)
        self._changed = False
