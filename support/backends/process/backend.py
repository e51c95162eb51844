"""The embedded default backend: PostgreSQL and the API as child processes on 127.0.0.1.

No Docker at all: a private PostgreSQL cluster is made with ``initdb`` in the
run's directory and started on a free port (as an unprivileged user when the
suite runs as root); the API runs under uvicorn on another free port. Both are
supervised with an ``unless-stopped`` restart policy.
"""
from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT
from support.core.config import Settings
from support.core.run_dirs import child_env
from support.proxy.link import POSTGRES_LINK, start_link
from support.backends.process.logs import read_stamped_log
from support.stack.stack_file import ApiDefinition, stack_definition
from support.backends.process.pg_binaries import PgBinaries, RunAs, find_pg_binaries, run_as_for
from support.core.ports import LOOPBACK, free_port
from support.stack.readiness import check_listener, database_answers, http_answers
from support.stack.services import Address, ServiceError
from support.stack.database import connect
from support.stack.stack import Cleanup, Stack
from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.core.waiting import WaitTimeout, wait_until

__all__ = ["PostgresProcess", "ApiProcess", "start_process_stack", "connection_values"]

_SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class _ProcessService:
    """What the two process services share: supervision, readiness, logs."""

    name: str

    def __init__(self, name: str, port: int, process: SupervisedProcess) -> None:
        self.name = name
        self._port = port
        self._process = process

    @property
    def address(self) -> Address:
        return Address(LOOPBACK, self._port)

    @property
    def pid(self) -> int | None:
        """PID of the running process (its process group id), or None when down."""
        return self._process.pid

    @property
    def restarts(self) -> int:
        """How many times the restart policy brought the service back."""
        return self._process.restarts

    def start(self, timeout: float = 30.0) -> None:
        self._process.start()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._process.stop(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self._process.kill(sig)

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        self._process.stop(timeout, self._stop_signal(mode))
        self.start(timeout)

    def _stop_signal(self, mode: str) -> int | None:
        return None

    def pause(self) -> None:
        self._process.pause()

    def resume(self) -> None:
        self._process.resume()

    def is_ready(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_until(self.is_ready, timeout, f"{self.name} becoming ready")
        except WaitTimeout as error:
            lines = self.logs().splitlines()[-30:]
            fatal = [line.split(" ", 1)[-1] for line in lines if "FATAL" in line or "Error" in line]
            state = "running" if self._process.running else "not running"
            said = f"; it said: {fatal[-1].strip()}" if fatal else ""
            raise ServiceError(f"{error}; the process is {state}{said}; see its log {self._process.spec.log_path}",
                               logs="\n".join(lines)) from None

    def logs(self, since: float | None = None) -> str:
        return read_stamped_log(self._process.spec.log_path, since)

    def close(self) -> None:
        self._process.close()


class PostgresProcess(_ProcessService):
    """A private PostgreSQL cluster; restart modes map to ``smart``/``fast``/``immediate`` shutdowns."""

    def __init__(self, bins: PgBinaries, run_as: RunAs, run_dir: Path, password: str) -> None:
        self.bins = bins
        self.run_as = run_as
        self.data_dir = run_dir / "pgdata"
        self.password = password
        port = free_port()
        argv = [bins.path("postgres"), "-D", str(self.data_dir), "-p", str(port),
                # TCP on loopback only; no Unix socket (its path length limit bites in deep run dirs)
                "-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories=",
                "-c", "max_connections=100", "-c", "shared_buffers=32MB",
                "-c", "log_line_prefix=%m [%p] %a ", "-c", "logging_collector=off"]
        spec = ProcessSpec(argv=argv, env=child_env(run_dir), cwd=run_dir, log_path=run_dir / "postgres.log",
                           stop_signal=signal.SIGINT, popen_kwargs=run_as.popen_kwargs())
        super().__init__("postgres", port, SupervisedProcess("postgres", spec))

    def initdb(self) -> None:
        """Create the cluster with a superuser ``postgres`` whose password is ``self.password``."""
        reach = subprocess.run(["test", "-x", str(self.data_dir.parent)], timeout=10, **self.run_as.popen_kwargs())
        if reach.returncode != 0:
            raise ServiceError(f"PostgreSQL runs as {self.run_as.user} and cannot enter {self.data_dir.parent}: "
                               "set work_root to a directory every user can enter (the default is under /tmp)")
        self.data_dir.mkdir(mode=0o700)
        self.run_as.chown(self.data_dir)
        pwfile = self.data_dir.parent / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self.run_as.chown(pwfile)
        try:
            done = subprocess.run(
                [self.bins.path("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--pwfile", str(pwfile),
                 "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync", "--no-instructions"],
                capture_output=True, text=True, timeout=120, env=child_env(self.data_dir.parent), cwd=self.data_dir.parent,
                **self.run_as.popen_kwargs())
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceError(f"initdb failed ({self.bins.bindir}): {done.stderr.strip().splitlines()[-1:]}",
                               logs=done.stdout + done.stderr)

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A libpq DSN for this cluster."""
        return (f"host={LOOPBACK} port={self._port} dbname={dbname} user={user} "
                f"password={password or self.password}")

    def _stop_signal(self, mode: str) -> int | None:
        try:
            return _SHUTDOWN_SIGNALS[mode]
        except KeyError:
            raise ValueError(f"unknown restart mode {mode!r}; use one of: {', '.join(_SHUTDOWN_SIGNALS)}") from None

    def is_ready(self) -> bool:
        check_listener(self._port, self.pid, self.name)  # an answer from another process is not ours
        return database_answers(self.dsn())


class ApiProcess(_ProcessService):
    """The service under test, run by the stack file's command; ready when its health path answers at all."""

    def __init__(self, api: ApiDefinition, values: dict[str, str], run_dir: Path) -> None:
        port = free_port()
        values = {**values, "host": LOOPBACK, "port": str(port)}
        env = child_env(run_dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(api.environment(values))
        spec = ProcessSpec(argv=api.argv(values), env=env, cwd=api.cwd, log_path=run_dir / "api.log",
                           stop_signal=api.stop_signal)
        super().__init__("api", port, SupervisedProcess("api", spec))
        self.url = f"http://{LOOPBACK}:{port}"
        self.health_url = self.url + api.health_path

    def is_ready(self) -> bool:
        # the API is up when it answers; whether its database is reachable is the health check's business
        check_listener(self._port, self.pid, self.name)  # an answer from another process is not ours
        return http_answers(self.health_url)


def _create_app_database(postgres: PostgresProcess, database: str, role: str, password: str, timeout: float) -> None:
    # autocommit: CREATE DATABASE refuses to run in a transaction
    with connect(postgres.dsn(), timeout) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
        cur.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')


def connection_values(host: str, port: int, database: str, user: str, password: str) -> dict[str, str]:
    """The database placeholders of a stack file's command and environment."""
    return {"db_host": host, "db_port": str(port), "db_name": database, "db_user": user, "db_password": password,
            "database_url": f"postgresql://{user}:{password}@{host}:{port}/{database}",
            "sqlalchemy_url": f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{database}",
            "python": sys.executable, "repo": str(REPO_ROOT)}


def start_process_stack(settings: Settings, run_dir: Path) -> Stack:
    """Start PostgreSQL and the API as child processes in ``run_dir``; return the ready stack.

    Each thing's close is pushed as it is made: on any failure what was made is
    closed, newest first, before the error propagates.
    """
    definition = stack_definition(settings)  # a bad stack file is refused before anything starts
    run_as = run_as_for(settings.pg_user)
    bins = find_pg_binaries(settings.pg_bin, run_as, settings.work_root_path / "cache")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)
    admin_password = secrets.token_urlsafe(18)
    app_password = secrets.token_urlsafe(18)
    postgres = PostgresProcess(bins, run_as, run_dir, admin_password)
    postgres.initdb()
    db, role = definition.database_name, definition.database_user
    with Cleanup() as made:
        made.callback(postgres.close)
        link = start_link(run_dir, POSTGRES_LINK, postgres.address)
        made.callback(link.close)
        # the API reaches PostgreSQL through the fault proxy; the suite's own SQL goes direct
        values = connection_values(LOOPBACK, link.address.port, db, role, app_password)
        values["stack_dir"] = str(definition.path.parent)
        api = ApiProcess(definition.api, values, run_dir)
        made.callback(api.close)
        postgres.start(settings.start_timeout)
        _create_app_database(postgres, db, role, app_password, settings.start_timeout)
        api.start(settings.start_timeout)
        stack = Stack(backend="process", services={"postgres": postgres, "api": api}, api_url=api.url,
                      links={("api", "postgres"): link}, workload=definition.workload,
                      health_path=definition.api.health_path,
                      admin_dsn=postgres.dsn(db), app_dsn=postgres.dsn(db, role, app_password),
                      versions={"postgres": bins.version(), "postgres_binaries": bins.source,
                                "python": sys.version.split()[0]},
                      secrets=(admin_password, app_password), cleanup=made.pop_all())
    return stack
