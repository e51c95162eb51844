"""The embedded default backend: every service of the stack file as a child process on 127.0.0.1.

No Docker at all: each ``kind = "postgres"`` service is a private cluster made
with ``initdb`` in the run's directory and started on a free port (as an
unprivileged user when the suite runs as root); each ``kind = "command"``
service runs its program on another free port. All are supervised with an
``unless-stopped`` restart policy.

Here: the command services (:class:`CommandProcess`, their ``before_start``), the
placeholders each service sees, and :func:`start_process_stack`, which makes the
clusters and their databases, the links and the services and starts them in order.
The cluster itself is :mod:`support.backends.process.postgres`; what both kinds of
process share is :mod:`support.backends.process.service`.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

from support import REPO_ROOT
from support.backends.faketime import make_clock
from support.backends.process.haproxy import DatabaseBalancer
from support.backends.process.patroni import make_replicated
from support.backends.process.pg_binaries import find_pg_binaries, run_as_for
from support.backends.process.postgres import PostgresProcess
from support.backends.process.service import ProcessService, last_lines
from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.core.config import Settings
from support.core.ports import LOOPBACK, free_port
from support.core.run_dirs import child_env
from support.proxy.link import Link, start_link
from support.stack.database import connect
from support.stack.definitions import DatabaseDefinition, ServiceDefinition, StackDefinition
from support.stack.operations import render
from support.stack.readiness import (
    check_listener,
    command_succeeds,
    http_answers,
    http_ok,
    query_answers,
    tcp_answers,
)
from support.stack.services import Address, Service, ServiceError
from support.stack.stack import Cleanup, Stack
from support.stack.stack_file import stack_definition

# PostgresProcess lives in support.backends.process.postgres; re-exported here
__all__ = [
    "PostgresProcess",
    "CommandProcess",
    "ApiProcess",
    "start_process_stack",
    "connection_values",
    "run_before_start",
]


class CommandProcess(ProcessService):
    """A ``kind = "command"`` service: its program supervised, its ``before_start`` run before every start.

    ``url`` and ``health_url`` exist when it listens on a port (``{port}`` in its command).
    """

    def __init__(
        self,
        definition: ServiceDefinition,
        values: dict[str, str],
        run_dir: Path,
        port: int | None = None,
        clock_faults: bool = False,
    ) -> None:
        self.definition = definition
        port = port or (free_port() if definition.listens else 0)
        self._values = {**values, "host": LOOPBACK, "port": str(port)}
        env = child_env(run_dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(definition.environment(self._values))
        #: this service's wall clock (libfaketime preloaded, real time until a clock fault), None without the library
        self.clock = make_clock(run_dir, definition.name, enabled=clock_faults)
        if self.clock is not None:
            env.update(self.clock.environment(inherited=env.get("LD_PRELOAD", "")))
        self._env = env
        spec = ProcessSpec(
            argv=definition.argv(self._values),
            env=env,
            cwd=definition.cwd,
            log_path=run_dir / f"{definition.name}.log",
            stop_signal=definition.stop_signal,
        )
        super().__init__(definition.name, port, SupervisedProcess(definition.name, spec))
        self.url = f"http://{LOOPBACK}:{port}"
        self.health_url = self.url + definition.health_path
        #: a libpq DSN for a ``ready = { sql = ... }`` check: the first used postgres, direct (set by the backend)
        self.ready_dsn = ""

    def start(self, timeout: float = 30.0) -> None:
        """Run ``before_start`` (when not running), start, and wait for ``ready`` (its own timeout if it sets one)."""
        if not self._process.running:
            run_before_start(self.definition, self._values, self._env, timeout)
        self._process.start()
        ready = self.definition.ready
        self.wait_ready(ready.timeout if ready and ready.timeout else timeout)

    def is_ready(self) -> bool:
        ready = self.definition.ready
        if ready is None or ready.kind == "command":
            argv = [render(part, self._values) for part in ready.argv] if ready else []
            return self._process.running and command_succeeds(argv, self.definition.cwd, self._env)
        if ready.kind == "sql":
            return self._process.running and query_answers(self.ready_dsn, ready.target)
        check_listener(self._port, self.pid, self.name)  # an answer from another process is not ours
        if ready.kind == "tcp":
            return tcp_answers(LOOPBACK, self._port)
        # any_status: the service is up when it answers; whether its database is reachable is the health check's
        return (http_answers if ready.any_status else http_ok)(self.url + ready.target)


#: the name the single-service stack used for its one command service
ApiProcess = CommandProcess


def run_before_start(
    definition: ServiceDefinition, values: dict[str, str], env: dict[str, str], timeout: float
) -> None:
    """Run the service's ``before_start`` commands in order, each within what is left of ``timeout`` s.

    A failing one raises :class:`ServiceError` with its last output lines in the one-line message
    (and all of it in ``logs``): the start stops there.
    """
    deadline = time.monotonic() + timeout
    for argv in definition.before_start_argvs(values):
        try:
            done = subprocess.run(
                argv,
                cwd=definition.cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(deadline - time.monotonic(), 0.1),
            )
        except subprocess.TimeoutExpired as error:
            output = _text(error.stdout) + _text(error.stderr)
            raise ServiceError(
                f"{definition.name}: before_start {' '.join(argv)} did not finish within {timeout:g} s{last_lines(output)}",
                logs=output,
            ) from None
        except OSError as error:
            raise ServiceError(f"{definition.name}: before_start {' '.join(argv)} cannot run: {error}") from None
        if done.returncode != 0:
            output = done.stdout + done.stderr
            raise ServiceError(
                f"{definition.name}: before_start {' '.join(argv)} exited {done.returncode}{last_lines(output)}",
                logs=output,
            )


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _create_databases(
    postgres: PostgresProcess | DatabaseBalancer,
    databases: tuple[DatabaseDefinition, ...],
    passwords: dict[str, str],
    timeout: float,
) -> None:
    """Each listed database, owned by its role (made once, with its password)."""
    made: set[str] = set()
    for database in databases:
        if database.user not in made:
            _create_app_database(postgres, database.name, database.user, passwords[database.user], timeout)
            made.add(database.user)
        else:
            with connect(postgres.dsn(), timeout) as conn, conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{database.name}" OWNER "{database.user}"')


def _create_app_database(
    postgres: PostgresProcess | DatabaseBalancer, database: str, role: str, password: str, timeout: float
) -> None:
    # autocommit: CREATE DATABASE refuses to run in a transaction
    with connect(postgres.dsn(), timeout) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
        cur.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')


def connection_values(
    host: str, port: int, database: str, user: str, password: str, name: str = "postgres"
) -> dict[str, str]:
    """The placeholders of a used postgres ``name`` (``{name.url}`` ...) and their single-database aliases."""
    url = f"postgresql://{user}:{password}@{host}:{port}/{database}"
    legacy = {
        "db_host": host,
        "db_port": str(port),
        "db_name": database,
        "db_user": user,
        "db_password": password,
        "database_url": url,
        "sqlalchemy_url": url.replace("postgresql://", "postgresql+psycopg2://", 1),
    }
    named = {
        "host": host,
        "port": str(port),
        "url": url,
        "sqlalchemy_url": legacy["sqlalchemy_url"],
        "db_name": database,
        "db_user": user,
        "db_password": password,
    }
    return {
        **legacy,
        **{f"{name}.{key}": value for key, value in named.items()},
        "python": sys.executable,
        "repo": str(REPO_ROOT),
    }


def service_values(
    definition: StackDefinition, name: str, link_ports: dict[tuple[str, str], int], passwords: dict[str, str]
) -> dict[str, str]:
    """The placeholders service ``name`` sees: each used service through its link's listener, the stack's paths."""
    values = {"python": sys.executable, "repo": str(REPO_ROOT), "stack_dir": str(definition.path.parent)}
    for used in definition.services[name].uses:
        port = link_ports[(name, used)]
        server = definition.services[used]
        if server.is_database:
            first = server.databases[0]
            values.update(connection_values(LOOPBACK, port, first.name, first.user, passwords[first.user], used))
        else:
            values.update({f"{used}.host": LOOPBACK, f"{used}.port": str(port)})
    return values


def start_process_stack(settings: Settings, run_dir: Path) -> Stack:
    """Start every service of the stack file as child processes in ``run_dir``, in dependency order.

    Each ``uses`` edge gets a fault proxy the client reaches its server through
    (the suite's own SQL goes direct). Each thing's close is pushed as it is
    made: on any failure what was made is closed, newest first, before the
    error propagates.
    """
    definition = stack_definition(settings)  # a bad stack file is refused before anything starts
    run_as = run_as_for(settings.pg_user)
    bins = find_pg_binaries(settings.pg_bin, run_as, settings.work_root_path / "cache")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)
    admin_password = secrets.token_urlsafe(18)
    passwords = {
        database.user: secrets.token_urlsafe(18)
        for service in definition.services.values()
        for database in service.databases
    }
    clusters: dict[str, PostgresProcess | DatabaseBalancer] = {}
    commands: dict[str, CommandProcess] = {}
    members: dict[str, dict[str, Service]] = {}  # a replicated database's processes, in start order
    replicated = {}
    cluster_links: dict[tuple[str, str], Link] = {}  # a replicated database's own links (node to etcd, to a node)
    with Cleanup() as made:
        ports: dict[str, int] = {}
        for name, service in definition.services.items():
            if service.kind == "patroni":
                made_here = make_replicated(service, bins, run_as, run_dir, admin_password)
                made.callback(made_here.close_links)  # pushed first, so closed last: the nodes still reach etcd
                for member in made_here.members.values():
                    made.callback(member.close)
                members[name] = dict(made_here.members)
                cluster_links.update(made_here.links)
                clusters[name] = made_here.balancer
                replicated[name] = made_here.database
                ports[name] = made_here.balancer.address.port
            elif service.kind == "postgres":
                postgres = PostgresProcess(bins, run_as, run_dir, admin_password, name, disk_mb=settings.pg_disk_mb)
                made.callback(postgres.close)
                postgres.initdb()
                clusters[name] = postgres
                ports[name] = postgres.address.port
            elif service.listens:
                ports[name] = free_port()
        links: dict[tuple[str, str], Link] = {}
        for client, server in definition.links:
            links[(client, server)] = link = start_link(
                run_dir, server, Address(LOOPBACK, ports[server]), protocol=definition.services[server].protocol
            )
            made.callback(link.close)
        link_ports = {edge: link.address.port for edge, link in links.items()}
        links.update(cluster_links)
        for name, service in definition.services.items():
            if service.kind == "command":
                process = CommandProcess(
                    service,
                    service_values(definition, name, link_ports, passwords),
                    run_dir,
                    ports.get(name),
                    clock_faults=settings.clock_faults,
                )
                made.callback(process.close)
                process.ready_dsn = _ready_dsn(definition, name, clusters, passwords)
                commands[name] = process
        services: dict[str, Service] = {name: clusters.get(name) or commands[name] for name in definition.services}
        start_order = tuple(member for name in definition.start_order for member in (members.get(name) or (name,)))
        for group in members.values():
            services.update(group)
        for name in start_order:
            services[name].start(settings.start_timeout)
            if name in clusters:
                _create_databases(
                    clusters[name], definition.services[name].databases, passwords, settings.start_timeout
                )
        database = clusters[definition.database_service.name]
        db, role = definition.database_name, definition.database_user
        target = commands[definition.target]
        stack = Stack(
            backend="process",
            services=services,
            api_url=target.url,
            links=links,
            workload=definition.workload,
            health_path=definition.api.health_path,
            start_order=start_order,
            target=definition.target,
            replicated=replicated,
            admin_dsn=database.dsn(db),
            app_dsn=database.dsn(db, role, passwords[role]),
            versions={"postgres": bins.version(), "postgres_binaries": bins.source, "python": sys.version.split()[0]},
            secrets=(admin_password, *passwords.values()),
            cleanup=made.pop_all(),
        )
    return stack


def _ready_dsn(
    definition: StackDefinition,
    name: str,
    clusters: dict[str, PostgresProcess | DatabaseBalancer],
    passwords: dict[str, str],
) -> str:
    """A direct DSN to the first postgres ``name`` uses (its first database), for a ``ready = { sql }`` check."""
    for used in definition.services[name].uses:
        server = definition.services[used]
        if server.is_database:
            first = server.databases[0]
            return clusters[used].dsn(first.name, first.user, passwords[first.user])
    return ""
