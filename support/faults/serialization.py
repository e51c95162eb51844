"""Serialization failures: the service's write transactions run SERIALIZABLE and meet a concurrent writer.

How the fault is made, and how faithful it is:

* ``ALTER SYSTEM SET default_transaction_isolation = 'serializable'`` and a
  configuration reload: every session of the cluster, the service's pooled
  ones included, begins its next transaction SERIALIZABLE (a backend re-reads
  the configuration before its next command). A service that sets its own
  isolation level (``SET TRANSACTION``, a driver's ``isolation_level``) keeps
  it; below REPEATABLE READ it then waits instead of failing, and the fault
  says it had no effect.
* A statement trigger on the workload's table makes every write transaction of
  the service update one hot counter row of a side table, as an application
  keeping a count would (``SECURITY DEFINER``: the service's role needs no
  grant).
* The fault's own session (READ COMMITTED) updates that row again and again,
  holding it ``hold`` s each time (``BEGIN; UPDATE; pg_sleep; COMMIT``) with
  ``pause`` s between. A service write that waits on the row, or whose snapshot
  predates the fault's commit, gets SQLSTATE 40001 (``serialization_failure``:
  "could not serialize access due to concurrent update") at the update;
  concurrent writes of the service conflict with each other the same way.
  These are the failures a real SERIALIZABLE workload with a hot row meets:
  the client is meant to retry the transaction.

The trigger counts each failure it sees on a sequence (``nextval`` outlives
the rollback): ``failures`` is that count, the service's transactions aborted
with 40001 at the counter row (failures at commit, SSI's read/write
dependencies, are not counted). The heal resets the isolation default (or
restores the server's own ``ALTER SYSTEM`` value), stops the session and drops
the trigger, its function, the side table and its sequence. It is journaled
(:meth:`SerializationFailures.residue`, healed by
:mod:`support.faults.residues`). ``ALTER SYSTEM`` needs a superuser: on a
database where the suite's admin role is not one (an attached database), the
fault is refused in one line.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from support.faults.admin import HEAL_TIMEOUT, admin_connection, database_identity, run_heal, terminated_note
from support.faults.base import Fault
from support.faults.cgroups import FaultUnavailable
from support.faults.concurrency import await_first_effect, drop_trigger_objects, install_write_trigger, session_loop
from support.faults.database import _reload

__all__ = [
    "SerializationFailures",
    "SERIAL_OBJECT",
    "SERIAL_APPLICATION",
    "ISOLATION",
    "drop_serial_objects",
    "restore_isolation",
    "server_isolation",
]

#: the side table, its trigger function and the trigger on the workload's table (residue heals look for it)
SERIAL_OBJECT = "chaos_suite_serial"
#: the sequence that counts the failures (owned by the side table: dropped with it)
_FAILURES = "chaos_suite_serial_failures"
SERIAL_APPLICATION = "chaos-suite-serial"
#: the server-wide setting the fault changes, and the value it sets
ISOLATION = "default_transaction_isolation"
_SERIALIZABLE = "serializable"
_COUNT_FAILURES = sql.SQL("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.{}").format(
    sql.Identifier(_FAILURES)
)


def server_isolation(cur) -> str | None:
    """The ``ALTER SYSTEM`` value of ``default_transaction_isolation`` (``postgresql.auto.conf``), or ``None``."""
    cur.execute(
        "SELECT setting FROM pg_file_settings WHERE name = %s AND sourcefile LIKE '%%postgresql.auto.conf'"
        " ORDER BY seqno DESC LIMIT 1",
        (ISOLATION,),
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def restore_isolation(dsn: str, was: str | None, timeout: float = HEAL_TIMEOUT) -> list[int]:
    """Set the server-wide isolation default back to ``was`` (``None``: reset), reloaded so every session takes
    it at its next transaction; the pids of the sessions the heal had to terminate (idempotent)."""

    def restore(cur) -> None:
        if was is None:
            cur.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(ISOLATION)))
        else:
            cur.execute(sql.SQL("ALTER SYSTEM SET {} = %s").format(sql.Identifier(ISOLATION)), (was,))
        _reload(cur, min(timeout, 10.0))

    return run_heal(dsn, "resetting the server-wide isolation default", restore, transaction=False, timeout=timeout)


def drop_serial_objects(dsn: str, table: str, timeout: float = HEAL_TIMEOUT) -> list[int]:
    """Drop the serialization fault's trigger on ``table``, its function, side table and sequence (the table owns
    it) (idempotent); the pids of the sessions the heal had to terminate."""
    return drop_trigger_objects(dsn, SERIAL_OBJECT, table, "the serialization trigger", timeout)


@dataclass
class SerializationFailures(Fault):
    """The service's writes to ``table`` meet serialization failures (40001) while the fault holds (see the
    module).

    ``inject`` refuses (:class:`support.faults.cgroups.FaultUnavailable`, one
    line) when the admin role is no superuser; else it installs the trigger,
    makes the server's transactions SERIALIZABLE, starts the fault's session
    and returns once a write of the service failed (within ``timeout`` s; else
    :class:`FaultHadNoEffect`, saying whether anything wrote). ``failures``
    counts the service's transactions aborted at the counter row, ``holds`` the
    fault's updates of it; ``heal`` wins within ``heal_timeout`` s.
    """

    dsn: str
    table: str = "users"
    timeout: float = 10.0
    heal_timeout: float = HEAL_TIMEOUT
    #: seconds the fault's session holds the counter row each time, and waits before the next hold
    hold: float = 0.1
    pause: float = 0.05
    instant: bool = False
    name: str = "serialization failures"
    active_since: float | None = None
    active_until: float | None = None
    failures: int = 0
    holds: int = 0
    #: the server's own ALTER SYSTEM value of the isolation default before the fault (None: none)
    was: str | None = None
    _changed: bool = field(default=False, repr=False)
    _isolation_changed: bool = field(default=False, repr=False)
    _was_known: bool = field(default=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _error: str = field(default="", repr=False)

    @property
    def target(self) -> str:
        return f"postgres ({self.table} table)"

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :mod:`support.faults.residues`);
        ``was`` only once the prior isolation default is known."""
        found = {"kind": "serialization", "database": database_identity(self.dsn), "table": self.table}
        return {**found, "was": self.was} if self._was_known else found

    def inject(self) -> None:
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
            user, superuser = cur.fetchone()
            if not superuser:
                raise FaultUnavailable(
                    f"serialization failures need ALTER SYSTEM, and the suite's admin role {user} on"
                    f" {database_identity(self.dsn)} is not a superuser: give it SUPERUSER or leave this scenario out"
                )
            self.was, self._was_known = server_isolation(cur), True
            self._install(conn, cur)
            self._isolation_changed = True  # before the statement: its answer may be lost after it took effect
            cur.execute(sql.SQL("ALTER SYSTEM SET {} = %s").format(sql.Identifier(ISOLATION)), (_SERIALIZABLE,))
            _reload(cur, self.timeout)
        self._stop.clear()
        self._thread = threading.Thread(target=self._contend, name="chaos-serialization", daemon=True)
        self._thread.start()
        await_first_effect(
            "serialization",
            lambda: self.failures,
            lambda: self._error,
            self.timeout,
            f"a write of the service to the {self.table} table failing to serialize",
            self._no_effect,
        )
        self.active_since = time.monotonic()

    def _install(self, conn, cur) -> None:
        ident, failures = sql.Identifier(SERIAL_OBJECT), sql.Identifier(_FAILURES)
        function = sql.SQL("""
            CREATE OR REPLACE FUNCTION public.{fn}() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, public AS $$
            BEGIN
                BEGIN
                    UPDATE public.{side} SET writes = writes + 1 WHERE id = 1;
                EXCEPTION WHEN serialization_failure THEN
                    PERFORM nextval('public.{seq}');  -- outlives the rollback: the fault's count
                    RAISE;
                END;
                RETURN NULL;
            END $$""").format(fn=ident, side=ident, seq=failures)
        conn.autocommit = False  # one transaction: all of it takes effect, or none
        self._changed = True  # before the statements: their answer may be lost after they took effect
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS public.{} (id int PRIMARY KEY, writes bigint NOT NULL DEFAULT 0,"
                " holds bigint NOT NULL DEFAULT 0)"
            ).format(ident)
        )
        cur.execute(sql.SQL("INSERT INTO public.{} (id) VALUES (1) ON CONFLICT DO NOTHING").format(ident))
        cur.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS public.{} OWNED BY public.{}.holds").format(failures, ident))
        install_write_trigger(cur, SERIAL_OBJECT, self.table, function)
        conn.commit()
        conn.autocommit = True  # ALTER SYSTEM refuses a transaction block

    def _no_effect(self) -> str:
        writes = self._writes()
        if writes:
            return (
                f"{writes} write(s) to the {self.table} table passed the counter row and none failed to serialize"
                f" within {self.timeout:g} s: does the service set its own isolation level (READ COMMITTED)?"
            )
        return f"no write to the {self.table} table within {self.timeout:g} s (is a load writing to it?)"

    def _writes(self) -> int:
        """The service's committed writes that updated the counter row (0 when it cannot be read)."""
        return self._read(sql.SQL("SELECT writes FROM public.{} WHERE id = 1").format(sql.Identifier(SERIAL_OBJECT)))

    def _read(self, query: sql.Composable) -> int:
        """One count from the fault's objects, on an admin connection of its own (0 when it cannot be read)."""
        try:
            with admin_connection(self.dsn, 5.0) as conn, conn.cursor() as cur:
                cur.execute(query)
                row = cur.fetchone()
        except psycopg2.Error:
            return 0
        return int(row[0]) if row else 0

    def _contend(self) -> None:
        """The fault's session: hold the counter row ``hold`` s, commit, count the failures, again and again."""
        side = sql.Identifier(SERIAL_OBJECT)
        update = sql.SQL("UPDATE public.{} SET holds = holds + 1 WHERE id = 1").format(side)
        # READ COMMITTED whatever the server's default now says: the fault's own updates wait, never fail
        settings: dict[str, object] = {ISOLATION: "read committed", "lock_timeout": "3s", "statement_timeout": "5s"}

        def contend(conn, cur) -> None:
            while not self._stop.is_set():
                cur.execute(update)
                cur.execute("SELECT pg_sleep(%s)", (self.hold,))  # the hold is the fault itself
                conn.commit()
                self.holds += 1
                cur.execute(_COUNT_FAILURES)
                self.failures = int(cur.fetchone()[0])
                conn.commit()
                self._stop.wait(self.pause)

        self._error = session_loop(self.dsn, SERIAL_APPLICATION, settings, self._stop, contend)

    def heal(self) -> None:
        self.mark_effect_over()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10.0)
        terminated: list[int] = []
        if self._isolation_changed:  # first: with READ COMMITTED back, the service's writes wait, never fail
            terminated += restore_isolation(self.dsn, self.was, self.heal_timeout)
            self._isolation_changed = False
        if not self._changed:
            return
        self.failures = max(self.failures, self._read(_COUNT_FAILURES))  # those after the session's last look
        terminated += drop_serial_objects(self.dsn, self.table, self.heal_timeout)
        self.heal_note = "; ".join(
            part
            for part in (
                f"{self.failures} serialization failure(s) of the service's writes, {self.holds} hold(s) of the"
                " counter row",
                terminated_note(terminated),
            )
            if part
        )
        self._changed = False
