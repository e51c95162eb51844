"""Engine, schema and the one way request handlers touch the database.

:class:`Database.run` runs a handler's synchronous unit of work in a worker
thread and awaits it with the request deadline, and turns every database
failure into :class:`DatabaseUnavailable` (answered 503 by :mod:`users_api.errors`).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from .config import Settings, redact
from .status import Reachability
from .threads import DaemonThreadPool, SingleFlight

__all__ = [
    "Database",
    "DatabaseUnavailable",
    "Deadline",
    "DeadlineExceeded",
    "EngineFactory",
    "ErrorHook",
    "answered_by_server",
    "describe_failure",
    "dispose_pool",
    "make_engine",
    "metadata",
    "should_discard_pool",
    "users",
]

log = logging.getLogger("users_api")
T = TypeVar("T")

metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True),  # BIGSERIAL on PostgreSQL
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

EngineFactory = Callable[[Settings], Engine]
ErrorHook = Callable[[Engine, BaseException], None]


class DatabaseUnavailable(Exception):
    """The database could not serve this request; ``detail`` is one short line."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class DeadlineExceeded(Exception):
    """The request deadline passed before the work could commit."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """An instant on ``time.monotonic()`` after which nobody waits for the work."""

    at: float
    seconds: float

    def check(self) -> None:
        """Raise :class:`DeadlineExceeded` if the deadline has passed."""
        if time.monotonic() >= self.at:
            raise DeadlineExceeded(f"request deadline of {self.seconds:g} s exceeded")


def make_engine(config: Settings, *, pre_ping: bool = True) -> Engine:
    """The SQLAlchemy engine for ``config``: small bounded pool, every timeout explicit."""
    options = f"-c statement_timeout={config.statement_timeout_ms} -c lock_timeout={config.lock_timeout_ms}"
    return create_engine(
        config.database_url,
        # A bounded QueuePool: an unbounded pool turns a slow database into thousands of
        # connections and a max_connections outage; a short pool_timeout turns a
        # saturated pool into a quick 503 instead of a queue of hanging requests.
        poolclass=QueuePool,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout,
        # pre_ping tests each pooled connection on checkout: after a PostgreSQL restart
        # every pooled socket is dead, and without it the first request on each one fails.
        pool_pre_ping=pre_ping,
        # Keep user data (emails) out of error messages that reach logs and 503 bodies.
        hide_parameters=True,
        connect_args={
            # libpq waits forever for a connect by default (e.g. to a frozen server).
            "connect_timeout": config.connect_timeout,
            # Lets pg_stat_activity and the chaos suite tell our sessions apart.
            "application_name": config.app_name,
            # Server-side limits: a runaway query or a lock queue cannot hold a pool slot forever.
            "options": options,
            # A silently vanished peer (network blackhole) otherwise blocks a recv for
            # ~15 minutes of TCP retransmissions; keepalives and tcp_user_timeout bound it.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        },
    )


def answered_by_server(exc: BaseException) -> bool:
    """True when PostgreSQL answered with an error on a session that lives on.

    Such an error has a SQLSTATE outside the "connection exception" class 08 and
    the "operator intervention" codes 57P* (shutdown, terminated session): a
    constraint, a lock or statement timeout, a read-only transaction.
    """
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    return isinstance(exc, DBAPIError) and code is not None and not code.startswith(("08", "57P"))


def should_discard_pool(exc: BaseException) -> bool:
    """True for failures that may leave dead connections in the pool.

    The pool is kept when the server answered on a live session
    (:func:`answered_by_server`) and when a new connection could not be opened
    (no statement ran: no pooled connection is implicated, and with no
    connection slot to spare the pooled ones could not be replaced). Pre-ping
    still checks each pooled connection on checkout, so after a restart the
    dead ones go anyway.
    """
    if not isinstance(exc, DBAPIError) or isinstance(exc, IntegrityError):
        return False
    if exc.connection_invalidated:
        return True  # SQLAlchemy saw a disconnect
    if not isinstance(exc, OperationalError) or exc.statement is None:
        return False
    return not answered_by_server(exc)  # no SQLSTATE: the connection failed under a statement


def dispose_pool(engine: Engine, exc: BaseException) -> None:
    """Drop every pooled connection if ``exc`` may have left dead ones (:func:`should_discard_pool`)."""
    # After a disconnect the other pooled connections are almost surely dead as well;
    # handing them out one by one would fail one request each. Checked-out connections
    # are not touched: their threads finish (or fail) on their own.
    if not should_discard_pool(exc):
        return
    log.debug("discarding pooled connections after: %s", describe_failure(exc))
    engine.dispose()


def describe_failure(exc: BaseException) -> str:
    """One short, password-free line saying why the database failed."""
    if isinstance(exc, PoolTimeoutError):
        return "connection pool exhausted (all connections busy)"
    if isinstance(exc, DeadlineExceeded):
        return str(exc)
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        message = str(exc.orig)
        kind = type(exc.orig).__name__
    else:
        message = str(exc)
        kind = type(exc).__name__
    first = next((line.strip() for line in message.splitlines() if line.strip()), kind)
    return redact(first)[:200]


class Database:
    """The request engine, a separate health-probe engine, and the worker threads."""

    def __init__(
        self,
        config: Settings,
        *,
        engine_factory: EngineFactory = make_engine,
        on_database_error: ErrorHook = dispose_pool,
    ) -> None:
        self.config = config
        self.engine = engine_factory(config)
        # The health probe gets its own single connection: it is answered while request
        # load saturates the pool, and a probe stuck on a frozen server never holds a
        # request's pool slot.
        self.probe_engine = engine_factory(replace(config, pool_size=1, max_overflow=0))
        self.on_database_error = on_database_error
        self.reachability = Reachability(log)
        self.schema_ready = threading.Event()
        # More threads than pool slots: threads stuck on a frozen server hold only their
        # slot, and the spare threads answer later requests with the pool-timeout 503.
        self._executor = DaemonThreadPool(max(8, 4 * config.pool_capacity + 4), "users-db")
        self._probe = SingleFlight(self._select_one, "users-health-probe")
        self._schema = SingleFlight(self._create_schema, "users-schema")
        self._filler = SingleFlight(self._fill_pool, "users-pool-fill")
        self._next_fill = 0.0  # time.monotonic() before which no new fill starts

    # -- request work ---------------------------------------------------------------

    async def run(self, work: Callable[[Session, Deadline], T]) -> T:
        """Run ``work(session, deadline)`` in a worker thread within REQUEST_TIMEOUT.

        ``work`` owns its transaction (``with session.begin(): ...``); the session is
        closed afterwards without commit, so anything not committed is rolled back.
        Raises :class:`DatabaseUnavailable` for every database failure, and lets
        ``IntegrityError`` through for the handler to answer (409).
        """
        if not self.schema_ready.is_set():
            raise DatabaseUnavailable("database schema not created yet")
        seconds = self.config.request_timeout
        deadline = Deadline(time.monotonic() + seconds, seconds)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._in_thread, work, deadline)
        try:
            # The deadline covers the queue, the pool checkout, the connect and the
            # statements: a frozen server costs this request REQUEST_TIMEOUT, not forever.
            result = await asyncio.wait_for(future, seconds)
        except TimeoutError:
            self._failed(f"request deadline of {seconds:g} s exceeded")
        except IntegrityError:
            self.reachability.up()
            raise
        except (DBAPIError, PoolTimeoutError, DeadlineExceeded) as exc:
            if answered_by_server(exc):
                # Reachable: it refused this work (read-only, lock or statement timeout). Logging
                # "unreachable" here would be false, and under a read-only database every
                # write/read pair would log a down and an up.
                self.reachability.up()
                raise DatabaseUnavailable(describe_failure(exc)) from None
            self._failed(describe_failure(exc))
        self.reachability.up()
        self._keep_pool_full()
        return result

    def _in_thread(self, work: Callable[[Session, Deadline], T], deadline: Deadline) -> T:
        deadline.check()  # the request may have waited out its deadline in the queue
        try:
            with Session(self.engine) as session:
                return work(session, deadline)
        except DBAPIError as exc:
            if not isinstance(exc, IntegrityError):
                self.on_database_error(self.engine, exc)
            raise

    # -- a full pool ------------------------------------------------------------------

    def _keep_pool_full(self) -> None:
        # A pool filled lazily holds only as many connections as requests ever ran at
        # once; when PostgreSQL then has no slot to spare, the first burst above that
        # needs a connect that is refused. Filling it (after a success, so the database
        # answers, at most once a second) keeps pool_size connections ready.
        now, pool = time.monotonic(), self.engine.pool
        if now < self._next_fill or not isinstance(pool, QueuePool) or pool.overflow() >= 0:
            return
        self._next_fill = now + 1.0
        self._filler.future()  # joins a fill still in flight rather than starting another

    def _fill_pool(self) -> None:
        pool = self.engine.pool
        held = []
        try:
            # Idle connections are taken first (FIFO), so holding them all for the few ms
            # of the connects makes the pool open the missing ones; overflow() reaches 0
            # when it holds pool_size connections.
            while pool.overflow() < 0 and len(held) < pool.size():
                held.append(pool.connect())
        except Exception as exc:  # noqa: BLE001 - a fill is best effort; requests report failures
            log.debug("could not fill the connection pool: %s", describe_failure(exc))
        finally:
            for conn in held:
                conn.close()

    def _failed(self, detail: str) -> None:
        self.reachability.down(detail)
        raise DatabaseUnavailable(detail)

    # -- health -----------------------------------------------------------------------

    def _select_one(self) -> None:
        try:
            with self.probe_engine.connect() as conn:
                conn.execute(text("SELECT 1")).scalar_one()
        except DBAPIError as exc:
            if not isinstance(exc, IntegrityError):
                self.on_database_error(self.probe_engine, exc)
            raise

    async def probe(self) -> bool:
        """True when ``SELECT 1`` succeeds within HEALTH_TIMEOUT; never takes longer."""
        try:
            await self._probe.run(self.config.health_timeout)
        except TimeoutError:
            self.reachability.down(f"health probe got no answer within {self.config.health_timeout:g} s")
            return False
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            self.reachability.down(describe_failure(exc))
            return False
        self.reachability.up()
        return True

    # -- schema -----------------------------------------------------------------------

    def _create_schema(self) -> None:
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn, checkfirst=True)  # CREATE TABLE only if missing
        except DBAPIError as exc:
            if not isinstance(exc, IntegrityError):
                self.on_database_error(self.engine, exc)
            raise

    async def create_schema(self) -> None:
        """Create the ``users`` table if missing, within REQUEST_TIMEOUT; raise on failure."""
        try:
            await self._schema.run(self.config.request_timeout)
        except DBAPIError as exc:
            self.reachability.down(describe_failure(exc))
            raise
        except TimeoutError:
            self.reachability.down(f"schema creation got no answer within {self.config.request_timeout:g} s")
            raise
        self.reachability.up()
        self.schema_ready.set()

    # -- shutdown ---------------------------------------------------------------------

    def close(self, timeout: float = 1.0) -> None:
        """Stop the workers and close pooled connections, waiting at most ``timeout`` s."""
        self._executor.shutdown(wait=False, cancel_futures=True)

        def dispose() -> None:
            self.engine.dispose()
            self.probe_engine.dispose()

        # Closing sockets should be instant, but never let shutdown depend on the server.
        closer = threading.Thread(target=dispose, name="users-db-close", daemon=True)
        closer.start()
        closer.join(timeout)
