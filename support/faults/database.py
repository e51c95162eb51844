"""Faults injected through an administrative (superuser) connection to the stack's PostgreSQL.

Each fault has ``inject()`` and an idempotent ``heal()`` that is also safe
after an ``inject()`` that failed half-way: a fault notes what it changed
before changing it, and ``heal()`` undoes only that. Faults held for a while
record ``active_since`` (monotonic s: ``inject()`` has made the fault take
effect) and ``active_until`` (monotonic s: ``heal()`` began), the window in
which its effect is certain (see :mod:`support.checks.during_faults`).

How each fault is made, and how faithful it is:

* :class:`TerminateBackends` - ``pg_terminate_backend`` of every session of
  the API's database role, then a wait until each has exited. The role, not the
  ``application_name``, selects the sessions: the suite creates the role for
  the service whatever it is, while an ``application_name`` is a convention of
  the reference API (which sets ``users-api``: both select the same sessions).
* :class:`SlotExhaustion` - a throw-away non-superuser role opens connections
  until PostgreSQL refuses the next one ("remaining connection slots are
  reserved"), and keeps taking any slot that frees up while held, as a
  connection leak elsewhere would: a client that closes a connection cannot
  get it back. The superuser-reserved slots stay free for the suite itself.
  A leak re-takes a freed slot only at its next poll, and a busy service that
  threw its connections away reconnects sooner: it would win that race most of
  the time. So that it never does, the service's own role (when it is not a
  superuser) may open no new session while the fault holds (``CONNECTION
  LIMIT 0``; its open sessions carry on), and the heal restores its limit.
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

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from support.stack.database import open_connection
from support.core.waiting import Deadline, wait_until

__all__ = ["TableLock", "TerminateBackends", "SlotExhaustion", "ReadOnlyDatabase", "SlowStatements",
           "FaultHadNoEffect", "api_role", "admin_connection", "database_identity", "heal_residue"]

SUITE_APPLICATION = "chaos-suite-fault"
_SLOTS_ROLE = "chaos_suite_slots"
_DELAY_FUNCTION = "chaos_suite_delay"
_DELAY_POLICY = "chaos_suite_slow"
_DELAY_MARKER = "chaos_suite.slept_at"


class FaultHadNoEffect(RuntimeError):
    """A fault could not find what to break; a scenario built on it would test nothing."""


def database_identity(dsn: str) -> str:
    """``host:port/dbname`` of a libpq DSN (no user, no password): which database a fault touched."""
    params = psycopg2.extensions.parse_dsn(dsn)
    return f"{params.get('host', 'localhost')}:{params.get('port', '5432')}/{params.get('dbname', '')}"


def api_role(app_dsn: str) -> str:
    """The database role in a libpq DSN (the role the suite made for the service)."""
    return psycopg2.extensions.parse_dsn(app_dsn)["user"]


@contextmanager
def admin_connection(dsn: str, timeout: float = 5.0) -> Iterator["psycopg2.extensions.connection"]:
    """An autocommit superuser connection, closed afterwards; statements and lock waits bounded by ``timeout`` s.

    It is read-write whatever ``default_transaction_read_only`` says, so a heal
    works while the read-only fault holds.
    """
    ms = int(timeout * 1000)
    conn = open_connection(dsn, timeout, application_name=SUITE_APPLICATION,
                           options=f"-c statement_timeout={ms} -c lock_timeout={ms}"
                                   " -c default_transaction_read_only=off")
    try:
        conn.autocommit = True
        yield conn
    finally:
        conn.close()


@dataclass
class TableLock:
    """Hold an ``ACCESS EXCLUSIVE`` lock on a table: every statement touching it waits."""

    dsn: str
    table: str = "users"
    instant: bool = False
    name: str = "table lock"
    active_since: float | None = None
    active_until: float | None = None
    _conn: object = field(default=None, repr=False)

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
class TerminateBackends:
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
        query = ("SELECT pid, pg_terminate_backend(pid), extract(epoch FROM clock_timestamp())::float"
                 " FROM pg_stat_activity"
                 " WHERE usename = %(role)s AND pid <> pg_backend_pid()"
                 " AND (%(app)s::text IS NULL OR application_name = %(app)s)")
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

            wait_until(exited, self.timeout, f"the {len(pids)} terminated sessions of {self.role} exiting",
                       interval=0.005)
        self.terminated = sum(1 for _, signalled, _ in results if signalled)

    def heal(self) -> None:
        """Nothing to undo."""


@dataclass
class SlotExhaustion:
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
    until their backends have exited, and drops the role.
    """

    dsn: str
    refill_interval: float = 0.1
    workers: int = 8
    timeout: float = 20.0
    instant: bool = False
    name: str = "connection slots exhausted"
    target: str = "postgres"
    role: str = _SLOTS_ROLE
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
            conn = psycopg2.connect(self._role_dsn(), connect_timeout=2, application_name="chaos-suite-slots")
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
            cur.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER CONNECTION LIMIT -1 PASSWORD %s")
                        .format(sql.Identifier(self.role)), (self._password,))
            self._lock_out_service(cur)
        deadline = Deadline(self.timeout)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="chaos-slots") as pool:
            for future in [pool.submit(self._fill, deadline) for _ in range(self.workers)]:
                future.result()
        if not self.refused:
            raise TimeoutError(f"PostgreSQL still accepted connections after {self.held} were opened"
                               f" in {self.timeout:g} s")
        # a client that opens and closes connections all the time frees slots while we fill:
        # take them back until none is free, for a while, before calling the fault a failure
        verify = Deadline(min(2.0, self.timeout))
        while True:
            with admin_connection(self.dsn) as conn, conn.cursor() as cur:
                free = _free_slots(cur)
            if free <= 0:
                break
            if verify.expired:  # the refusal was something else (authentication, a timeout): say so
                raise FaultHadNoEffect(f"{free} connection slots were still free after {self.held} connections;"
                                       f" the last attempt failed with: {self.refused}")
            while self._take_one():
                pass
        self.active_since = time.monotonic()
        self._refiller = threading.Thread(target=self._refill, name="chaos-slots-refill", daemon=True)
        self._refiller.start()

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :func:`heal_residue`)."""
        return {"kind": "slot_exhaustion", "database": database_identity(self.dsn), "role": self.role,
                "service_role": self.service_role, "service_limit": self._service_limit}

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
        with admin_connection(self.dsn) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT %s").format(sql.Identifier(self.service_role)),
                        (self._service_limit,))
        self._service_limit = None

    def heal(self) -> None:
        if self.active_since is not None and self.active_until is None:
            self.active_until = time.monotonic()
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
        with admin_connection(self.dsn) as conn, conn.cursor() as cur:
            # closing a connection returns at once; its backend frees the slot when it has exited
            def gone() -> bool:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (self.role,))
                return cur.fetchone()[0] == 0
            wait_until(gone, self.timeout, f"the sessions of {self.role} exiting", interval=0.02)
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.role)))
        self._role_made = False


def _free_slots(cur) -> int:
    """Connection slots a non-superuser could still take: ``max_connections`` less the
    superuser-reserved ones less every client backend (superusers' included)."""
    cur.execute("SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
                " - count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
    return int(cur.fetchone()[0])


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
    wait_until(lambda: _conf_load_time(cur) != before, timeout, "PostgreSQL reloading its configuration",
               interval=0.005)


@dataclass
class ReadOnlyDatabase:
    """Every new transaction of every session is read-only (``default_transaction_read_only``, server-wide).

    Existing sessions take the new default at their next statement; ``heal``
    makes them read-write again the same way. A write then fails with SQLSTATE
    25006 (``read_only_sql_transaction``) while reads go on.
    """

    dsn: str
    timeout: float = 5.0
    instant: bool = False
    name: str = "read-only"
    target: str = "postgres"
    active_since: float | None = None
    active_until: float | None = None
    _changed: bool = field(default=False, repr=False)

    def residue(self) -> dict:
        """What a run killed while this fault holds leaves in the database (see :func:`heal_residue`)."""
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
        if self.active_since is not None and self.active_until is None:
            self.active_until = time.monotonic()
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            cur.execute("ALTER SYSTEM RESET default_transaction_read_only")
            _reload(cur, self.timeout)
        self._changed = False


@dataclass
class SlowStatements:
    """Every statement of a non-superuser that touches a row of ``table`` waits ``delay`` seconds first.

    A row-level security policy (permissive, true, for every role) calls a
    function that sleeps once per statement; row security is enabled and
    forced on the table for the time of the fault (so its owner is slowed
    too) and set back as it was on ``heal``. The DDL waits at most ``timeout``
    s for the table's lock.
    """

    dsn: str
    delay: float
    table: str = "users"
    timeout: float = 10.0
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
        """What a run killed while this fault holds leaves in the database (see :func:`heal_residue`)."""
        return {"kind": "slow_statements", "database": database_identity(self.dsn), "table": self.table,
                "was": None if self._was is None else list(self._was)}

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
            END $$""").format(fn=sql.Identifier(_DELAY_FUNCTION), marker=sql.Literal(_DELAY_MARKER),
                              delay=sql.Literal(float(self.delay)))
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            cur.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                        (self.table,))
            was = cur.fetchone()
            conn.autocommit = False  # one transaction: all of it takes effect, or none
            self._was, self._changed = (bool(was[0]), bool(was[1])), True
            cur.execute(body)
            cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION public.{}() TO PUBLIC")
                        .format(sql.Identifier(_DELAY_FUNCTION)))
            cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(_DELAY_POLICY), table))
            cur.execute(sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR ALL TO PUBLIC USING (public.{}())"
                                " WITH CHECK (public.{}())")
                        .format(sql.Identifier(_DELAY_POLICY), table, sql.Identifier(_DELAY_FUNCTION),
                                sql.Identifier(_DELAY_FUNCTION)))
            cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY").format(table))
            conn.commit()
        self.active_since = time.monotonic()

    def heal(self) -> None:
        if not self._changed:
            return
        if self.active_since is not None and self.active_until is None:
            self.active_until = time.monotonic()
        table = sql.Identifier(self.table)
        enabled, forced = self._was or (False, False)
        with admin_connection(self.dsn, self.timeout) as conn, conn.cursor() as cur:
            conn.autocommit = False
            cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(_DELAY_POLICY), table))
            cur.execute(sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY, {} ROW LEVEL SECURITY").format(
                table, sql.SQL("ENABLE" if enabled else "DISABLE"), sql.SQL("FORCE" if forced else "NO FORCE")))
            cur.execute(sql.SQL("DROP FUNCTION IF EXISTS public.{}()").format(sql.Identifier(_DELAY_FUNCTION)))
            conn.commit()
        self._changed = False


def heal_residue(dsn: str, residue: dict) -> str:
    """Undo what a fault's ``residue()`` says a killed run left in the database at ``dsn``; what was done.

    A run killed by SIGKILL cannot heal; its journal keeps the residues of its
    open faults, and the next run against the same database heals them. The
    process and Docker backends' databases die with their run; an attached
    database does not. Each heal is the fault's own, idempotent. Where the
    journal was written before the fault recorded its prior state (a kill in
    the middle of ``inject``): the read-only default is reset; the slowing
    policy and function are dropped and row security is switched off only if
    no other policy is left on the table; a service role left at ``CONNECTION
    LIMIT 0`` gets the default (-1) back.
    """
    kind = residue.get("kind")
    if kind == "read_only":
        fault = ReadOnlyDatabase(dsn)
        fault._changed = True
        fault.heal()
        return "reset the server-wide read-only default"
    if kind == "slow_statements":
        table = str(residue["table"])
        fault = SlowStatements(dsn, 0.0, table)
        was = residue.get("was")
        if was is None:
            with admin_connection(dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_policy WHERE polrelid = %s::regclass AND polname <> %s",
                            (table, _DELAY_POLICY))
                others = cur.fetchone()[0]
                cur.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                            (table,))
                now = cur.fetchone()
            was = [False, False] if others == 0 else [bool(now[0]), bool(now[1])]
        fault._was, fault._changed = (bool(was[0]), bool(was[1])), True
        fault.heal()
        return f"removed the statement-slowing policy from table {table}"
    if kind == "slot_exhaustion":
        service_role = str(residue.get("service_role") or "")
        limit = residue.get("service_limit")
        fault = SlotExhaustion(dsn, role=str(residue["role"]), service_role=service_role)
        if service_role and limit is None:
            with admin_connection(dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (service_role,))
                row = cur.fetchone()
            limit = -1 if row is not None and row[0] == 0 else None  # 0 is the fault's, never a service's own
        fault._service_limit, fault._role_made = limit, True
        fault.heal()
        return f"dropped role {fault.role}" + (f" and gave {service_role} back its connection limit"
                                               if limit is not None else "")
    raise ValueError(f"unknown fault residue {kind!r}")
