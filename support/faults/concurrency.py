"""Faults of concurrent transactions: deadlocks the API's own writes run into, rows an idle transaction
holds, and the API's running statements cancelled (serialization failures: :mod:`support.faults.serialization`).

How each fault is made, and how faithful it is:

* :class:`Deadlocks` - two sessions that take the same two row locks in
  opposite orders. A statement trigger on the workload's table makes every
  write transaction of the service lock row 1 then row 2 of a side table
  (as an application that updates a counter and an audit row would); the
  fault's own session takes row 2, waits until a write of the service waits
  on it, then asks for row 1. PostgreSQL's own deadlock detector breaks the
  cycle and aborts the service's transaction with SQLSTATE 40P01
  (``deadlock_detected``): the trigger runs with ``deadlock_timeout`` 200 ms
  (below the reference API's 1 s lock timeout), the fault's session with
  60 s, so the service is always the victim. Writes that do not meet the
  fault's session pass; the fault says how many cycles it made. The trigger
  works on any service that writes the table, whatever its own transactions
  look like; a service whose own transactions cross (lock order) meets the
  same error.
* :class:`RowsHeld` - ``SELECT ... FOR UPDATE`` of every row of the table in
  a transaction left idle: what a client that forgot to commit does. Writers
  of those rows (updates, deletes, locking reads, foreign-key checks) wait;
  plain reads and inserts of new rows do not.
* :class:`StatementsCancelled` - ``pg_cancel_backend`` of the statements
  the service's role is running (SQLSTATE 57014, ``query_canceled``, as an
  operator or a watchdog would), every ``interval`` s for the fault's window,
  or once: until one statement was cancelled. A one-row write takes about a
  millisecond, so a signal sent to it often lands after it ended, and
  PostgreSQL ignores a cancel that finds its backend idle; the fault makes
  sure there is a statement to cancel: a statement trigger on the workload's
  table makes every write of the service's role sleep 50 ms (as a slow write
  would), and only statements that have run 5 ms or more (on the server's
  clock) are signalled, so the signal lands inside the sleep. The trigger
  catches the cancel there, counts it on a sequence (``nextval`` outlives the
  rollback) and raises it again unchanged: ``cancelled`` is the server's count
  of writes cancelled, not of signals sent. Reads are cancelled only when they
  run 5 ms or more (rarely, under a light load). The heal stops signalling and
  drops the trigger; it is journaled (:meth:`StatementsCancelled.residue`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql

from support.core.waiting import WaitTimeout, wait_until
from support.faults.admin import HEAL_TIMEOUT, admin_connection, database_identity, run_heal, terminated_note
from support.faults.base import Fault, FaultHadNoEffect
from support.faults.cgroups import FaultUnavailable
from support.stack.database import open_connection

__all__ = [
    "Deadlocks",
    "RowsHeld",
    "StatementsCancelled",
    "CROSS_OBJECT",
    "HOLD_APPLICATION",
    "CROSS_APPLICATION",
    "CANCEL_APPLICATION",
    "CANCEL_OBJECT",
    "drop_cancel_objects",
    "drop_cross_objects",
    "drop_trigger_objects",
    "install_write_trigger",
    "session_loop",
]

#: the side table, its trigger function and the trigger on the workload's table (residue heals look for it)
CROSS_OBJECT = "chaos_suite_cross"
HOLD_APPLICATION = "chaos-suite-hold"
CROSS_APPLICATION = "chaos-suite-deadlock"
CANCEL_APPLICATION = "chaos-suite-cancel"
#: the cancel fault's side table, trigger function and trigger; the sequence (owned by the table) that counts
CANCEL_OBJECT = "chaos_suite_cancel"
_CANCELLED = "chaos_suite_cancel_count"
#: the service's deadlock_timeout inside the trigger: below a lock timeout of 1 s, above the fault's reaction
_VICTIM_DEADLOCK_TIMEOUT = "200ms"


def install_write_trigger(cur, name: str, table: str, function: sql.Composable) -> None:
    """Create trigger function ``public.name`` from ``function`` (its ``CREATE OR REPLACE FUNCTION``), callable by
    every role, and the statement trigger ``name`` that runs it before each write to ``table``; in the caller's
    transaction (:func:`drop_trigger_objects` removes what this makes)."""
    ident = sql.Identifier(name)
    cur.execute(function)
    cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION public.{}() TO PUBLIC").format(ident))
    cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident, sql.Identifier(table)))
    cur.execute(
        sql.SQL(
            "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE ON {} FOR EACH STATEMENT EXECUTE FUNCTION public.{}()"
        ).format(ident, sql.Identifier(table), ident)
    )


def drop_trigger_objects(dsn: str, name: str, table: str, what: str, timeout: float = HEAL_TIMEOUT) -> list[int]:
    """Drop the trigger ``name`` on ``table``, the function and the side table of that name in ``public`` (and
    what the table owns), in one transaction (idempotent); the pids of the sessions the heal had to terminate.
    ``what`` names the trigger in a heal's error."""
    ident = sql.Identifier(name)

    def drop(cur) -> None:  # one transaction: all of it, or none
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        if cur.fetchone()[0]:
            cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident, sql.Identifier(table)))
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS public.{}()").format(ident))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS public.{}").format(ident))

    return run_heal(dsn, f"dropping {what} on table {table}", drop, timeout=timeout)


def drop_cross_objects(dsn: str, table: str, timeout: float = HEAL_TIMEOUT) -> list[int]:
    """Drop the deadlock fault's trigger on ``table``, its function and side table (idempotent); the pids
    of the sessions the heal had to terminate."""
    return drop_trigger_objects(dsn, CROSS_OBJECT, table, "the deadlock trigger", timeout)


def drop_cancel_objects(dsn: str, table: str, timeout: float = HEAL_TIMEOUT) -> list[int]:
    """Drop the cancel fault's trigger on ``table``, its function, side table and counting sequence (the table
    owns it) (idempotent); the pids of the sessions the heal had to terminate."""
    return drop_trigger_objects(dsn, CANCEL_OBJECT, table, "the cancel trigger", timeout)


def session_loop(
    dsn: str, application: str, settings: dict[str, object], stop: threading.Event, work: Callable[[Any, Any], None]
) -> str:
    """Run ``work(connection, cursor)`` on a session of a fault's own (named ``application``, with the session
    ``settings``), closed afterwards; the error that ended it, in one line ("" when none, or when ``stop`` was
    set: a heal's doing)."""
    try:
        conn = open_connection(dsn, 5.0, application_name=application, settings=settings)
    except psycopg2.Error as error:
        return " ".join(str(error).split())
    try:
        with conn.cursor() as cur:
            work(conn, cur)
    except psycopg2.Error as error:
        if not stop.is_set():
            return " ".join(str(error).split())
    finally:
        conn.close()
    return ""


def await_first_effect(
    what: str,
    effect: Callable[[], int],
    error: Callable[[], str],
    timeout: float,
    waiting_for: str,
    no_effect: Callable[[], str],
) -> None:
    """Wait up to ``timeout`` s until the ``what`` fault's own session made its first ``effect`` (a count) or
    failed; :class:`FaultHadNoEffect` (saying ``no_effect()``) when neither came, RuntimeError when it failed first."""
    try:
        wait_until(lambda: effect() > 0 or bool(error()), timeout, waiting_for, interval=0.01)
    except WaitTimeout:
        raise FaultHadNoEffect(no_effect()) from None
    if error() and not effect():
        raise RuntimeError(f"the {what} fault's session failed: {error()}")


@dataclass
class Deadlocks(Fault):
    """The service's writes to ``table`` deadlock with the fault's session while it holds (see the module).

    ``inject`` installs the trigger and the side table, starts the crossing
    session and returns once one cycle was made (within ``timeout`` s; else
    :class:`FaultHadNoEffect`: nothing wrote to the table). ``cycles`` counts
    the deadlocks made; ``heal`` stops the session and drops what it installed,
    winning within ``heal_timeout`` s.
    """

    dsn: str
    table: str = "users"
    timeout: float = 10.0
    heal_timeout: float = HEAL_TIMEOUT
    #: seconds the crossing session waits for a write to block on it before it starts over
    wait_for_victim: float = 0.5
    instant: bool = False
    name: str = "deadlocks"
    active_since: float | None = None
    active_until: float | None = None
    cycles: int = 0
    _changed: bool = field(default=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _error: str = field(default="", repr=False)

    @property
    def target(self) -> str:
        return f"postgres ({self.table} table)"

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :mod:`support.faults.residues`)."""
        return {"kind": "deadlocks", "database": database_identity(self.dsn), "table": self.table}

    def inject(self) -> None:
        ident = sql.Identifier(CROSS_OBJECT)
        function = sql.SQL("""
            CREATE OR REPLACE FUNCTION public.{fn}() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, public SET deadlock_timeout = {victim} AS $$
            BEGIN
                PERFORM 1 FROM public.{side} WHERE id = 1 FOR UPDATE;
                PERFORM 1 FROM public.{side} WHERE id = 2 FOR UPDATE;
                RETURN NULL;
            END $$""").format(fn=ident, side=ident, victim=sql.Literal(_VICTIM_DEADLOCK_TIMEOUT))
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            conn.autocommit = False  # one transaction: all of it takes effect, or none
            self._changed = True  # before the statements: their answer may be lost after they took effect
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS public.{} (id int PRIMARY KEY)").format(ident))
            cur.execute(sql.SQL("INSERT INTO public.{} VALUES (1), (2) ON CONFLICT DO NOTHING").format(ident))
            install_write_trigger(cur, CROSS_OBJECT, self.table, function)
            conn.commit()
        self._stop.clear()
        self._thread = threading.Thread(target=self._cross, name="chaos-deadlocks", daemon=True)
        self._thread.start()
        await_first_effect(
            "deadlock",
            lambda: self.cycles,
            lambda: self._error,
            self.timeout,
            f"a write of the service crossing the fault's session on the {self.table} table",
            lambda: (
                f"no write to the {self.table} table met the deadlock within {self.timeout:g} s"
                " (is a load writing to it?)"
            ),
        )
        self.active_since = time.monotonic()

    def _cross(self) -> None:
        """The fault's session: row 2, then (once a write of the service waits on it) row 1, again and again."""
        side = sql.Identifier(CROSS_OBJECT)
        lock = sql.SQL("SELECT 1 FROM public.{} WHERE id = %s FOR UPDATE").format(side)
        waited_on = (
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
            " AND transactionid::text = pg_current_xact_id()::text)"
        )
        settings: dict[str, object] = {"deadlock_timeout": "60s", "lock_timeout": "3s", "statement_timeout": "5s"}

        def cross(conn, cur) -> None:
            while not self._stop.is_set():
                cur.execute(lock, (2,))
                until = time.monotonic() + self.wait_for_victim
                blocked = False
                while not self._stop.is_set() and time.monotonic() < until:
                    cur.execute(waited_on)
                    if cur.fetchone()[0]:
                        blocked = True
                        break
                    self._stop.wait(0.002)
                if blocked:
                    cur.execute(lock, (1,))  # the cycle: PostgreSQL aborts the service's transaction
                    self.cycles += 1
                conn.rollback()

        self._error = session_loop(self.dsn, CROSS_APPLICATION, settings, self._stop, cross)

    def heal(self) -> None:
        self.mark_effect_over()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10.0)
        if not self._changed:
            return
        self.heal_note = "; ".join(
            part
            for part in (
                f"{self.cycles} deadlock(s) made",
                terminated_note(drop_cross_objects(self.dsn, self.table, self.heal_timeout)),
            )
            if part
        )
        self._changed = False


@dataclass
class RowsHeld(Fault):
    """Every row of ``table`` locked ``FOR UPDATE`` by a transaction left idle until ``heal``.

    ``rows`` says how many; :class:`FaultHadNoEffect` when the table has none.
    The lock is taken within ``timeout`` s (it waits for writers of the same rows).
    """

    dsn: str
    table: str = "users"
    timeout: float = 5.0
    instant: bool = False
    name: str = "rows held"
    rows: int = 0
    active_since: float | None = None
    active_until: float | None = None
    _conn: Any = field(default=None, repr=False)  # the psycopg2 connection whose transaction holds the rows

    @property
    def target(self) -> str:
        return f"postgres ({self.table} table)"

    def inject(self) -> None:
        ms = int(self.timeout * 1000)
        conn = open_connection(
            self.dsn, 5.0, application_name=HOLD_APPLICATION, settings={"lock_timeout": ms, "statement_timeout": ms}
        )
        self._conn = conn
        with conn.cursor() as cur:  # psycopg2 opened a transaction: the row locks live until rollback
            cur.execute(
                sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} FOR UPDATE) AS held").format(sql.Identifier(self.table))
            )
            self.rows = cur.fetchone()[0]
        if not self.rows:
            raise FaultHadNoEffect(f"the {self.table} table has no row to hold (create some first)")
        self.active_since = time.monotonic()

    def heal(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.mark_effect_over()
            try:
                conn.rollback()
            except psycopg2.Error:
                pass  # a broken connection took its locks with it: healed either way
            finally:
                conn.close()


@dataclass
class StatementsCancelled(Fault):
    """The statements ``role`` runs cancelled (``pg_cancel_backend``) for the fault's window, or, with ``once``,
    an instant fault that returns once one was (see the module).

    ``inject`` refuses (:class:`support.faults.cgroups.FaultUnavailable`, one
    line) when the admin role may not signal the service's backends or put a
    trigger on ``table``, or the table does not exist; else it installs the
    trigger (each write of ``role`` to the table sleeps ``sleep`` s in it),
    starts the cancelling session and returns once a write was cancelled
    (within ``timeout`` s; else :class:`FaultHadNoEffect`, saying whether any
    signal was sent). ``cancelled`` counts the writes PostgreSQL cancelled in
    the trigger (the server's count: a signal that lands after its statement
    ended cancels nothing and is not counted), ``signalled`` the signals sent
    (every ``interval`` s, to each statement of ``role`` running for
    ``min_age`` s or more). ``heal`` stops the session and drops the trigger,
    winning within ``heal_timeout`` s; with ``once``, ``inject`` heals before
    it returns.
    """

    dsn: str
    role: str
    table: str = "users"
    once: bool = False
    timeout: float = 5.0
    heal_timeout: float = HEAL_TIMEOUT
    #: seconds each write of ``role`` to the table sleeps in the trigger: a statement that is surely running
    sleep: float = 0.05
    #: seconds between two rounds of signals, and the age a statement needs to be signalled (server clock)
    interval: float = 0.01
    min_age: float = 0.005
    cancelled: int = 0
    signalled: int = 0
    active_since: float | None = None
    active_until: float | None = None
    _changed: bool = field(default=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _error: str = field(default="", repr=False)

    @property
    def instant(self) -> bool:  # type: ignore[override]
        return self.once

    @property
    def name(self) -> str:
        return "statements cancelled" + (" once" if self.once else "")

    @property
    def target(self) -> str:
        return f"postgres (statements of {self.role})"

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :mod:`support.faults.residues`)."""
        return {"kind": "cancel", "database": database_identity(self.dsn), "table": self.table}

    def inject(self) -> None:
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            self._refuse_unless_able(cur)
            self._install(conn, cur)
        self._stop.clear()
        self._thread = threading.Thread(target=self._cancel, name="chaos-cancel", daemon=True)
        self._thread.start()
        await_first_effect(
            "cancelling",
            lambda: self.cancelled,
            lambda: self._error,
            self.timeout,
            f"a write of {self.role} to the {self.table} table cancelled",
            self._no_effect,
        )
        self.active_since = time.monotonic()
        if self.once:
            self.heal()

    def _refuse_unless_able(self, cur) -> None:
        """:class:`FaultUnavailable` (one line) unless the admin role can signal ``role`` and own the trigger."""
        cur.execute(
            "SELECT current_user, rolsuper, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'),"
            " (SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class WHERE oid = to_regclass(%s))"
            " FROM pg_roles WHERE rolname = current_user",
            (self.table,),
        )
        user, superuser, signals, owns = cur.fetchone()
        where = database_identity(self.dsn)
        if owns is None:
            raise FaultUnavailable(f"there is no {self.table} table in {where} to cancel writes to: start the service")
        if not superuser and not (signals and owns):
            raise FaultUnavailable(
                f"cancelling the statements of {self.role} needs a superuser (or a member of pg_signal_backend that"
                f" owns the {self.table} table), and the suite's admin role {user} on {where} is neither:"
                " give it SUPERUSER or leave this scenario out"
            )

    def _install(self, conn, cur) -> None:
        ident, count = sql.Identifier(CANCEL_OBJECT), sql.Identifier(_CANCELLED)
        function = sql.SQL("""
            CREATE OR REPLACE FUNCTION public.{fn}() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            BEGIN
                IF session_user = {role} THEN
                    BEGIN
                        PERFORM pg_sleep({sleep});
                    EXCEPTION WHEN query_canceled THEN
                        PERFORM nextval('public.{seq}');  -- outlives the rollback: the fault's count
                        RAISE;
                    END;
                END IF;
                RETURN NULL;
            END $$""").format(fn=ident, role=sql.Literal(self.role), sleep=sql.Literal(self.sleep), seq=count)
        conn.autocommit = False  # one transaction: all of it takes effect, or none
        self._changed = True  # before the statements: their answer may be lost after they took effect
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS public.{} (counts bigint)").format(ident))
        cur.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS public.{} OWNED BY public.{}.counts").format(count, ident))
        install_write_trigger(cur, CANCEL_OBJECT, self.table, function)
        conn.commit()

    def _no_effect(self) -> str:
        if self.signalled:
            return (
                f"{self.signalled} signal(s) sent to statements of {self.role} and none cancelled a write to the"
                f" {self.table} table within {self.timeout:g} s (is a load writing to it?)"
            )
        return (
            f"no statement of {self.role} ran within {self.timeout:g} s to cancel (is a load writing to the"
            f" {self.table} table?)"
        )

    def _cancel(self) -> None:
        """The fault's session: signal the statements of ``role`` running for ``min_age`` s, read the count."""
        signal = sql.SQL(
            "SELECT (SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity"
            " WHERE usename = %s AND state = 'active' AND pid <> pg_backend_pid() AND %s"
            " AND query_start < clock_timestamp() - make_interval(secs => %s)),"
            " (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.{})"
        ).format(sql.Identifier(_CANCELLED))
        # once: no second signal while the first may still be landing (its count comes within the sleep)
        pending = self.sleep + 0.1
        settings: dict[str, object] = {"statement_timeout": "5s", "lock_timeout": "3s"}

        def cancel(conn, cur) -> None:
            conn.autocommit = True  # a fresh pg_stat_activity for every round
            last_signal = -pending
            while not self._stop.is_set():
                quiet = self.once and time.monotonic() - last_signal < pending
                cur.execute(signal, (self.role, not quiet, self.min_age))
                sent, counted = cur.fetchone()
                self.signalled += sent
                self.cancelled = max(self.cancelled, int(counted))
                if sent:
                    last_signal = time.monotonic()
                if self.once and self.cancelled:
                    return
                self._stop.wait(self.interval)

        self._error = session_loop(self.dsn, CANCEL_APPLICATION, settings, self._stop, cancel)

    def _count(self) -> int:
        """The writes cancelled in the trigger, on an admin connection of its own (0 when it cannot be read)."""
        try:
            with admin_connection(self.dsn, 5.0) as conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.{}").format(
                        sql.Identifier(_CANCELLED)
                    )
                )
                return int(cur.fetchone()[0])
        except psycopg2.Error:
            return 0

    def heal(self) -> None:
        self.mark_effect_over()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10.0)
        if not self._changed:
            return
        self.cancelled = max(self.cancelled, self._count())  # those after the session's last look
        self.heal_note = "; ".join(
            part
            for part in (
                f"{self.cancelled} statement(s) cancelled, {self.signalled} signal(s) sent",
                terminated_note(drop_cancel_objects(self.dsn, self.table, self.heal_timeout)),
            )
            if part
        )
        self._changed = False
