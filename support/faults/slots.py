"""Connection slots exhausted: a throw-away role takes every slot a non-superuser can get.

A throw-away non-superuser role opens connections until PostgreSQL refuses
the next one ("remaining connection slots are reserved"), and keeps taking any
slot that frees up while held, as a connection leak elsewhere would: a client
that closes a connection cannot get it back. The superuser-reserved slots stay
free for the suite itself. A leak re-takes a freed slot only at its next poll,
and a busy service that threw its connections away reconnects sooner: it
would win that race most of the time. So that it never does, the service's
own role (when it is not a superuser) may open no new session while the fault
holds (``CONNECTION LIMIT 0``; its open sessions carry on), and the heal
restores its limit.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from support.core.waiting import Deadline, WaitTimeout, wait_until
from support.faults.admin import HEAL_TIMEOUT, admin_connection, database_identity, run_heal, terminated_note
from support.faults.base import Fault, FaultHadNoEffect
from support.stack.database import open_connection

__all__ = ["SlotExhaustion", "SLOTS_ROLE"]

#: the throw-away role that holds the slots
SLOTS_ROLE = "chaos_suite_slots"


@dataclass
class SlotExhaustion(Fault):
    """Take every connection slot a non-superuser can get, and keep taking those that free up.

    ``inject`` makes a throw-away login role, opens connections with it from
    ``workers`` threads until PostgreSQL refuses one (within ``timeout`` s),
    checks in ``pg_stat_activity`` that no slot is left (else
    :class:`FaultHadNoEffect`), and starts a thread that every
    ``refill_interval`` s takes every slot that has freed up, while the fault
    lasts. With ``service_role`` (the service's database role), that role may
    open no new session while the fault lasts, so that a slot the service
    frees is never its own again. ``held`` is how many connections it holds,
    ``refused`` the last refusal. ``heal`` restores the service role's limit,
    stops that thread, closes the connections, waits (at most ``timeout`` s)
    until their backends have exited, and drops the role; its statements win
    within ``heal_timeout`` s (:func:`support.faults.admin.run_heal`).
    """

    dsn: str
    refill_interval: float = 0.1
    workers: int = 8
    timeout: float = 20.0
    heal_timeout: float = HEAL_TIMEOUT
    instant: bool = False
    name: str = "connection slots exhausted"
    target: str = "postgres"
    role: str = SLOTS_ROLE
    service_role: str = ""
    active_since: float | None = None
    active_until: float | None = None
    refused: str = ""
    _password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    _conns: list = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _refiller: threading.Thread | None = field(default=None, repr=False)
    _role_made: bool = field(default=False, repr=False)
    _service_limit: int | None = field(default=None, repr=False)  # the limit to restore, once changed

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._conns)

    def _role_dsn(self) -> str:
        params = psycopg2.extensions.parse_dsn(self.dsn)
        params.update(user=self.role, password=self._password)
        return psycopg2.extensions.make_dsn(**params)

    def _take_one(self) -> bool:
        """Open one more connection and keep it; False once PostgreSQL refuses (no slot left)."""
        try:
            conn = open_connection(self._role_dsn(), 2.0, application_name="chaos-suite-slots", wait_for_slot=False)
        except psycopg2.OperationalError as error:
            self.refused = " ".join(str(error).split())
            return False
        with self._lock:
            if self._stop.is_set():  # healed meanwhile: do not keep it
                conn.close()
                return False
            self._conns.append(conn)
        return True

    def _fill(self, deadline: Deadline) -> None:
        while not deadline.expired and not self._stop.is_set() and self._take_one():
            pass

    def _refill(self) -> None:
        # a slot that frees up (a client closed a connection) is taken back at once, as a leak elsewhere would
        while not self._stop.wait(self.refill_interval):
            while self._take_one():
                pass

    def inject(self) -> None:
        self._stop.clear()
        with admin_connection(self.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.role,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            self._role_made = True  # before the statement: heal drops the role even if its answer is lost
            cur.execute(
                sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER CONNECTION LIMIT -1 PASSWORD %s").format(
                    sql.Identifier(self.role)
                ),
                (self._password,),
            )
            self._lock_out_service(cur)
        deadline = Deadline(self.timeout)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="chaos-slots") as pool:
            for future in [pool.submit(self._fill, deadline) for _ in range(self.workers)]:
                future.result()
        if not self.refused:
            raise TimeoutError(
                f"PostgreSQL still accepted connections after {self.held} were opened in {self.timeout:g} s"
            )
        # a client that opens and closes connections all the time frees slots while we fill:
        # take them back until none is free, for a while, before calling the fault a failure
        try:
            wait_until(
                self._take_free_slots,
                min(2.0, self.timeout),
                "every connection slot taken",
                done=lambda free: free <= 0,
                retry_on=(),
            )
        except WaitTimeout as late:  # the refusal was something else (authentication, a timeout): say so
            raise FaultHadNoEffect(
                f"{late.last} connection slots were still free after {self.held} connections;"
                f" the last attempt failed with: {self.refused}"
            ) from None
        self.active_since = time.monotonic()
        self._refiller = threading.Thread(target=self._refill, name="chaos-slots-refill", daemon=True)
        self._refiller.start()

    def _take_free_slots(self) -> int:
        """How many slots were free; takes every one of them before answering, so the next look finds none."""
        with admin_connection(self.dsn) as conn, conn.cursor() as cur:
            free = _free_slots(cur)
        while free > 0 and self._take_one():
            pass
        return free

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :func:`heal_residue`)."""
        return {
            "kind": "slot_exhaustion",
            "database": database_identity(self.dsn),
            "role": self.role,
            "service_role": self.service_role,
            "service_limit": self._service_limit,
        }

    def _lock_out_service(self, cur) -> None:
        if not self.service_role:
            return
        cur.execute("SELECT rolconnlimit, rolsuper FROM pg_roles WHERE rolname = %s", (self.service_role,))
        row = cur.fetchone()
        if row is None or row[1]:  # no such role, or a superuser (whom no limit binds)
            return
        self._service_limit = row[0]  # before the statement: heal restores it even if its answer is lost
        cur.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 0").format(sql.Identifier(self.service_role)))

    def _restore_service(self) -> None:
        if self._service_limit is None:
            return
        limit = self._service_limit

        def restore(cur) -> None:
            cur.execute(
                sql.SQL("ALTER ROLE {} CONNECTION LIMIT %s").format(sql.Identifier(self.service_role)), (limit,)
            )

        self._note(
            run_heal(
                self.dsn,
                f"giving role {self.service_role} its connection limit back",
                restore,
                transaction=False,
                timeout=self.heal_timeout,
            )
        )
        self._service_limit = None

    def _note(self, terminated: list[int]) -> None:
        if terminated:
            self.heal_note = terminated_note(terminated)

    def heal(self) -> None:
        self.mark_effect_over()
        try:
            self._restore_service()  # first: the slots freed below are the service's to take
        finally:  # the slots are given back even if that failed (a later heal retries it)
            self._stop.set()
            if self._refiller is not None:
                self._refiller.join(self.timeout)
                self._refiller = None
            with self._lock:
                conns, self._conns = self._conns, []
            for conn in conns:
                conn.close()
        if not self._role_made:
            return

        def drop(cur) -> None:
            # closing a connection returns at once; its backend frees the slot when it has exited
            def gone() -> bool:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (self.role,))
                return cur.fetchone()[0] == 0

            wait_until(gone, self.timeout, f"the sessions of {self.role} exiting", interval=0.02)
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role)))

        self._note(run_heal(self.dsn, f"dropping role {self.role}", drop, transaction=False, timeout=self.heal_timeout))
        self._role_made = False


def _free_slots(cur) -> int:
    """Connection slots a non-superuser could still take: ``max_connections`` less the
    superuser-reserved ones less every client backend (superusers' included)."""
    cur.execute(
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int - count(*)"
        " FROM pg_stat_activity WHERE backend_type = 'client backend'"
    )
    return int(cur.fetchone()[0])
