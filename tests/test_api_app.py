"""Tests for the reference users API (stack/api/users_api).

Most tests need no database: they check configuration parsing, the mapping of
failures to 503s, and the hang protections against a "frozen server" (a socket
that completes the TCP handshake and never answers, as a SIGSTOPped PostgreSQL
does). The last group starts a private PostgreSQL cluster and is skipped only
when no PostgreSQL server binaries are installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
API_DIR = REPO / "stack" / "api"
sys.path.insert(0, str(API_DIR))

from users_api import routes  # noqa: E402
from users_api.config import ConfigError, Settings, load_settings  # noqa: E402
from users_api.db import (  # noqa: E402
    Database,
    DatabaseUnavailable,
    Deadline,
    DeadlineExceeded,
    answered_by_server,
    describe_failure,
    should_discard_pool,
    users,
)
from users_api.main import create_app  # noqa: E402
from users_api.threads import DaemonThreadPool, SingleFlight  # noqa: E402

from support.backends.process.pg_binaries import PgNotFound, find_pg_binaries, run_as_for  # noqa: E402

URL = "postgresql+psycopg2://app:s3cret-pw@127.0.0.1:5432/app"


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` s pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# -- configuration ------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings({"DATABASE_URL": URL})
    assert (s.pool_size, s.max_overflow, s.pool_timeout, s.connect_timeout) == (5, 0, 1.0, 2)
    assert (s.statement_timeout_ms, s.lock_timeout_ms) == (1500, 1000)
    assert (s.request_timeout, s.health_timeout, s.app_name) == (3.0, 0.8, "users-api")


def test_values_are_read_and_scheme_normalised() -> None:
    env = {
        "DATABASE_URL": "postgresql://app:pw@127.0.0.1:5433/x",
        "DB_POOL_SIZE": "7",
        "DB_MAX_OVERFLOW": "2",
        "DB_POOL_TIMEOUT": "0.5",
        "REQUEST_TIMEOUT": "4",
        "APP_NAME": "users-api-b",
        "DB_LOCK_TIMEOUT_MS": "",  # empty means unset
    }
    s = load_settings(env)
    assert s.database_url.startswith("postgresql+psycopg2://app:pw@127.0.0.1:5433/x")
    assert (s.pool_size, s.max_overflow, s.pool_capacity, s.pool_timeout) == (7, 2, 9, 0.5)
    assert (s.request_timeout, s.app_name, s.lock_timeout_ms) == (4.0, "users-api-b", 1000)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://app:s3cret-pw@127.0.0.1/app"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "postgresql+psycopg2://app:s3cret-pw@127.0.0.1:5432"),
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_SIZE", "five"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("DB_POOL_TIMEOUT", "0"),
        ("DB_POOL_TIMEOUT", "nan"),
        ("DB_CONNECT_TIMEOUT", "1.5"),
        ("DB_STATEMENT_TIMEOUT_MS", "-5"),
        ("DB_LOCK_TIMEOUT_MS", "1s"),
        ("REQUEST_TIMEOUT", "inf"),
        ("HEALTH_TIMEOUT", "-0.1"),
        ("APP_NAME", "x" * 64),
    ],
)
def test_bad_value_gives_one_line_naming_the_variable(variable: str, value: str) -> None:
    env = {"DATABASE_URL": URL, variable: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert caught.value.variable == variable
    assert message.startswith(variable + " ")
    assert "\n" not in message
    assert "s3cret-pw" not in message


def test_missing_database_url() -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL is required"):
        load_settings({})


def test_password_never_shown() -> None:
    s = load_settings({"DATABASE_URL": URL})
    assert "s3cret-pw" not in repr(s)
    assert s.database == "postgresql+psycopg2://app:***@127.0.0.1:5432/app"


# -- failure mapping ----------------------------------------------------------------------


def _wrapped(orig: Exception, **kwargs) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg2.Error, **kwargs)


def test_failures_that_may_leave_dead_connections_discard_the_pool() -> None:
    disconnect = _wrapped(psycopg2.OperationalError("server closed the connection unexpectedly"))
    invalidated = _wrapped(psycopg2.InterfaceError("connection already closed"), connection_invalidated=True)
    duplicate = _wrapped(psycopg2.errors.UniqueViolation("duplicate key"))
    syntax = _wrapped(psycopg2.errors.SyntaxError("syntax error"))
    assert isinstance(disconnect, sa_exc.OperationalError)
    assert isinstance(duplicate, sa_exc.IntegrityError)
    assert [should_discard_pool(e) for e in (disconnect, invalidated, duplicate, syntax)] == [True, True, False, False]
    assert should_discard_pool(sa_exc.TimeoutError("pool")) is False


def test_failure_descriptions_are_one_short_line_without_secrets() -> None:
    multi = _wrapped(psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis probably means"))
    secret = _wrapped(psycopg2.OperationalError("could not connect: password=s3cret-pw rejected"))
    assert describe_failure(multi) == "server closed the connection unexpectedly"
    assert "s3cret-pw" not in describe_failure(secret)
    assert (
        describe_failure(sa_exc.TimeoutError("QueuePool limit")) == "connection pool exhausted (all connections busy)"
    )
    assert describe_failure(DeadlineExceeded("request deadline of 3 s exceeded")) == "request deadline of 3 s exceeded"
    assert len(describe_failure(_wrapped(psycopg2.OperationalError("x" * 1000)))) == 200


def test_deadline_check() -> None:
    Deadline(time.monotonic() + 60, 60).check()  # not passed: no exception
    with pytest.raises(DeadlineExceeded, match="deadline of 2 s"):
        Deadline(time.monotonic() - 0.001, 2).check()


# -- threads ------------------------------------------------------------------------------


def test_single_flight_shares_one_call_and_times_out() -> None:
    release = threading.Event()
    calls: list[int] = []

    def stuck() -> int:
        calls.append(1)
        release.wait(10)
        return 42

    flight = SingleFlight(stuck, "test-flight")

    async def many() -> tuple[list[object], float]:
        started = time.monotonic()
        results = await asyncio.gather(*(flight.run(0.2) for _ in range(5)), return_exceptions=True)
        return results, time.monotonic() - started

    first, first_elapsed = asyncio.run(many())
    # Still stuck: the callers join the same call, which is already past its deadline,
    # so they are answered at once and no second call starts.
    again, again_elapsed = asyncio.run(many())
    release.set()
    assert all(isinstance(r, TimeoutError) for r in first + again)
    assert 0.15 < first_elapsed < 1.0
    assert again_elapsed < 0.1
    assert len(calls) == 1
    assert asyncio.run(flight.run(2.0)) == 42


def test_daemon_pool_runs_jobs_and_skips_cancelled_ones() -> None:
    pool = DaemonThreadPool(1, "test-pool")
    gate = threading.Event()
    ran: list[str] = []
    first = pool.submit(lambda: gate.wait(5) and ran.append("first"))
    second = pool.submit(lambda: ran.append("second"))
    assert second.cancel()
    gate.set()
    first.result(5)
    third = pool.submit(lambda: "third")
    assert third.result(5) == "third"
    pool.shutdown(wait=True)
    assert ran == ["first"]
    assert pool.thread_count == 1


def test_stuck_worker_does_not_block_interpreter_exit() -> None:
    # A stdlib ThreadPoolExecutor would join this worker at exit and hang forever:
    # that is what makes an API on a frozen database ignore SIGTERM.
    code = (
        "import sys, threading; sys.path.insert(0, sys.argv[1]);"
        "from users_api.threads import DaemonThreadPool;"
        "DaemonThreadPool(2, 'p').submit(threading.Event().wait)"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code, str(API_DIR)], timeout=10, check=True)
    assert time.monotonic() - started < 5


# -- the app against a frozen or absent server --------------------------------------------


@pytest.fixture
def frozen_server() -> Iterator[int]:
    """A port whose kernel completes TCP handshakes but nobody ever answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening (connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _settings(port: int, **overrides) -> Settings:
    base = load_settings({"DATABASE_URL": f"postgresql+psycopg2://app:pw@127.0.0.1:{port}/app"})
    return replace(base, **overrides)


def test_app_starts_without_database_and_answers_503(closed_port: int) -> None:
    app = create_app(_settings(closed_port))
    with TestClient(app) as client:
        health = client.get("/health")
        created = client.post("/users", json={"name": "Ann", "email": "ann@example.com"})
        invalid = client.post("/users", json={"name": "", "email": "nope"})
        bad_id = client.get("/users/abc")
    assert health.status_code == 503
    assert health.json() == {"status": "degraded", "database": "unreachable"}
    assert created.status_code == 503
    assert created.headers["retry-after"] == "1"
    assert created.json()["error"] == "database unavailable"
    assert (invalid.status_code, bad_id.status_code) == (422, 422)


def test_frozen_server_health_is_bounded_and_single_flight(frozen_server: int) -> None:
    app = create_app(_settings(frozen_server, health_timeout=0.3))
    before = set(threading.enumerate())
    with TestClient(app) as client:
        started = time.monotonic()
        statuses = [client.get("/health").status_code for _ in range(4)]
        elapsed = time.monotonic() - started
        probes = [t for t in set(threading.enumerate()) - before if t.name == "users-health-probe"]
    assert statuses == [503] * 4
    assert elapsed < 0.9  # one probe deadline (0.3 s), not four
    assert len(probes) == 1


def test_frozen_server_request_deadline_gives_503_and_error_hook_runs(frozen_server: int) -> None:
    db = Database(
        _settings(frozen_server, request_timeout=0.4, connect_timeout=10), on_database_error=lambda e, x: None
    )
    db.schema_ready.set()

    async def attempt() -> None:
        await db.run(lambda session, deadline: session.execute(select(1)).scalar_one())

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="request deadline of 0.4 s exceeded"):
        asyncio.run(attempt())
    elapsed = time.monotonic() - started
    db.close()
    assert 0.35 < elapsed < 1.5


def test_operational_error_calls_the_error_hook_and_maps_to_503(closed_port: int) -> None:
    seen: list[BaseException] = []
    db = Database(_settings(closed_port), on_database_error=lambda engine, exc: seen.append(exc))
    db.schema_ready.set()

    async def attempt() -> None:
        await db.run(lambda session, deadline: session.execute(select(1)).scalar_one())

    with pytest.raises(DatabaseUnavailable, match="Connection refused"):
        asyncio.run(attempt())
    db.close()
    assert len(seen) == 1
    assert isinstance(seen[0], sa_exc.OperationalError)


def _lifespan_messages(app) -> list[dict]:
    sent: list[dict] = []
    inbox = [{"type": "lifespan.startup"}]

    async def receive() -> dict:
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    return sent


def test_bad_environment_fails_startup_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("DB_POOL_SIZE", "lots")
    sent = _lifespan_messages(create_app())
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"] == "users-api: configuration error: DB_POOL_SIZE must be an integer >= 1, got 'lots'"


def test_uvicorn_without_database_url_prints_one_line_and_exits() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(API_DIR)
    # Port 0: the app fails during startup, before uvicorn would bind anything.
    cmd = [sys.executable, "-m", "uvicorn", "users_api.main:app", "--host", "127.0.0.1", "--port", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    mentions = [line for line in done.stderr.splitlines() if "DATABASE_URL" in line]
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(mentions) == 1
    assert mentions[0].endswith(
        "configuration error: DATABASE_URL is required, e.g. postgresql+psycopg2://user:password@127.0.0.1:5432/dbname"
    )


# -- against a real PostgreSQL ------------------------------------------------------------


@dataclass
class Cluster:
    """A private PostgreSQL cluster on 127.0.0.1, run as ``nobody`` when we are root."""

    bindir: Path
    root: Path
    port: int
    popen_kwargs: dict
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://app:app-pw@127.0.0.1:{self.port}/app"

    def start(self, timeout: float = 20.0) -> None:
        cmd = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.root / "data"),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self.popen_kwargs
        )
        log.close()

        def ready() -> bool:
            try:
                psycopg2.connect(
                    host=str(self.root), port=self.port, user="postgres", dbname="postgres", connect_timeout=2
                ).close()
                return True
            except psycopg2.OperationalError:
                return False

        if not wait_until(ready, timeout):
            raise RuntimeError("postgres did not start: " + (self.root / "postgres.log").read_text()[-500:])

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT) and wait for the postmaster to exit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    run_as = run_as_for("nobody")  # PostgreSQL refuses to run as root
    try:
        bindir = find_pg_binaries("", run_as, Path(tempfile.gettempdir()) / "users-api-test-pg").bindir
    except PgNotFound as exc:
        pytest.skip(str(exc))
    kwargs = run_as.popen_kwargs()
    root = Path(tempfile.mkdtemp(prefix="users-api-pg-"))
    run_as.chown(root)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=60,
        **kwargs,
    )
    c = Cluster(bindir, root, port, kwargs)
    c.start()
    try:
        conn = psycopg2.connect(host=str(root), port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
            cur.execute("CREATE DATABASE app OWNER app")
        conn.close()
        yield c
    finally:
        if c.proc is not None and c.proc.poll() is None:
            c.stop()
        shutil.rmtree(root, ignore_errors=True)


def _healthy_client(client: TestClient, timeout: float = 10.0) -> None:
    assert wait_until(lambda: client.get("/health").status_code == 200, timeout), "API never became healthy"


def test_crud_against_postgres(cluster: Cluster) -> None:
    with TestClient(create_app(load_settings({"DATABASE_URL": cluster.url}))) as client:
        _healthy_client(client)
        created = client.post("/users", json={"name": "Ann", "email": "crud@example.com"})
        duplicate = client.post("/users", json={"name": "Ann", "email": "crud@example.com"})
        user_id = created.json()["id"]
        fetched = client.get(f"/users/{user_id}")
        page = client.get("/users", params={"limit": 500})
        deleted = client.delete(f"/users/{user_id}")
        gone = client.get(f"/users/{user_id}")
        deleted_again = client.delete(f"/users/{user_id}")
    assert created.status_code == 201
    assert set(created.json()) == {"id", "name", "email", "created_at"}
    assert duplicate.status_code == 409
    assert "error" in duplicate.json()
    assert fetched.json() == created.json()
    assert page.status_code == 200
    assert page.json()["total"] == len(page.json()["items"]) >= 1
    assert [deleted.status_code, gone.status_code, deleted_again.status_code] == [204, 404, 404]


def test_pool_is_filled_after_a_success_so_a_slot_outage_finds_it_full(cluster: Cluster) -> None:
    settings = load_settings({"DATABASE_URL": cluster.url, "DB_POOL_SIZE": "4"})
    with TestClient(create_app(settings)) as client:
        _healthy_client(client)
        before = client.app.state.db.engine.pool.checkedin()
        client.get("/users")
        pool = client.app.state.db.engine.pool
        filled = wait_until(lambda: pool.checkedin() == 4, 5.0)
    assert before <= 1  # lazily, the pool opens what requests need
    assert filled, f"the pool holds {pool.checkedin()} connections, not 4"


def test_write_past_its_deadline_leaves_no_row(cluster: Cluster) -> None:
    db = Database(load_settings({"DATABASE_URL": cluster.url}))
    expired = Deadline(time.monotonic() - 1, 3)
    with pytest.raises(DeadlineExceeded), Session(db.engine) as session:
        routes._create(session, expired, "Late", "late@example.com")
    with Session(db.engine) as session:
        count = session.execute(select(func.count()).select_from(users).where(users.c.email == "late@example.com"))
        remaining = count.scalar_one()
    db.close()
    assert remaining == 0


def _load_broken(name: str):
    spec = importlib.util.spec_from_file_location(f"broken_{name}", REPO / "tests" / "broken_apis" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def test_first_request_after_restart_real_vs_no_pre_ping(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", cluster.url)
    with TestClient(create_app()) as real, TestClient(_load_broken("no_pre_ping")) as broken:
        _healthy_client(real)
        _healthy_client(broken)
        assert real.get("/users").status_code == 200  # pools now hold a live connection
        assert broken.get("/users").status_code == 200
        cluster.stop()
        cluster.start()
        real_first = real.get("/users")
        broken_first = broken.get("/users")
        broken_second = broken.get("/users")
    assert real_first.status_code == 200
    assert broken_first.status_code == 503
    assert broken_first.headers["retry-after"] == "1"
    assert broken_second.status_code == 200


def _admin(cluster: Cluster):
    conn = psycopg2.connect(host=str(cluster.root), port=cluster.port, user="postgres", dbname="app")
    conn.autocommit = True
    return conn


def _error_of(engine, *statements: str) -> sa_exc.DBAPIError:
    """The SQLAlchemy error the last of ``statements`` raises on a real server."""
    with pytest.raises(sa_exc.DBAPIError) as caught, engine.connect() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    return caught.value


def test_errors_on_a_live_session_keep_the_pool_lost_sessions_discard_it(cluster: Cluster, closed_port: int) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(cluster.url, poolclass=NullPool)
    admin = _admin(cluster)
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS discard_probe (x int)")
        cur.execute("GRANT ALL ON discard_probe TO app")
    holder = _admin(cluster)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE discard_probe IN ACCESS EXCLUSIVE MODE")
    lock_timeout = _error_of(engine, "SET lock_timeout = 50", "SELECT * FROM discard_probe")
    holder.rollback()
    holder.close()
    statement_timeout = _error_of(engine, "SET statement_timeout = 50", "SELECT pg_sleep(1)")
    read_only = _error_of(engine, "SET TRANSACTION READ ONLY", "INSERT INTO discard_probe VALUES (1)")
    with pytest.raises(sa_exc.DBAPIError) as caught, engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        conn.exec_driver_sql("SELECT 1")
    terminated = caught.value
    refused = _error_of(create_engine(f"postgresql+psycopg2://app:pw@127.0.0.1:{closed_port}/app"), "SELECT 1")
    admin.close()
    assert [e.orig.pgcode for e in (lock_timeout, statement_timeout, read_only)] == ["55P03", "57014", "25006"]
    assert refused.statement is None  # it never got a connection to run a statement on
    assert [should_discard_pool(e) for e in (lock_timeout, statement_timeout, read_only, refused)] == [False] * 4
    assert should_discard_pool(terminated) is True
    answered = [answered_by_server(e) for e in (lock_timeout, statement_timeout, read_only, terminated, refused)]
    assert answered == [True, True, True, False, False]


def test_read_only_database_answers_writes_503_reads_200_and_keeps_the_pool(cluster: Cluster) -> None:
    admin = _admin(cluster)
    with TestClient(create_app(load_settings({"DATABASE_URL": cluster.url}))) as client:
        _healthy_client(client)
        user_id = client.post("/users", json={"name": "Ro", "email": "ro@example.com"}).json()["id"]
        engine = client.app.state.db.engine
        try:
            with admin.cursor() as cur:
                cur.execute("ALTER ROLE app SET default_transaction_read_only = on")
            engine.dispose()  # the role's default reaches new sessions only
            pool = engine.pool
            refused = client.post("/users", json={"name": "Ro", "email": "ro2@example.com"})
            kept = (engine.pool is pool, pool.checkedin())
            reachable = client.app.state.db.reachability.reachable
            read = client.get(f"/users/{user_id}")
            health = client.get("/health")
        finally:
            with admin.cursor() as cur:
                cur.execute("ALTER ROLE app RESET default_transaction_read_only")
            admin.close()
        engine.dispose()
        accepted = client.post("/users", json={"name": "Ro", "email": "ro3@example.com"})
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "error": "database unavailable",
        "detail": "cannot execute INSERT in a read-only transaction",
    }
    assert kept == (True, 1)  # the refusal did not throw the pool's connection away
    assert reachable is True  # the server answered: it is not logged as unreachable
    assert (read.status_code, health.status_code, accepted.status_code) == (200, 200, 201)
