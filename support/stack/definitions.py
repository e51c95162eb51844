"""What a stack file describes, once parsed: named services, their links and readiness, and the workload.

Every backend builds from these objects (the process backend runs them as
child processes, the Docker backend in containers, the Compose backend maps
them onto a user's compose project); :mod:`support.stack.stack_file` reads them
from TOML and refuses, in one line, anything that cannot work.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.stack.operations import render
from support.stack.replicated import ReplicationOptions
from support.stack.workload import Workload

__all__ = [
    "ServiceDefinition",
    "DatabaseDefinition",
    "ReadyCheck",
    "StackDefinition",
    "ApiDefinition",
    "READY_KINDS",
    "POSTGRES_FIELDS",
    "DATABASE_KINDS",
    "placeholders_in",
]

#: how a service can say it is up: an HTTP path answering 2xx, a TCP connect, a SQL query, a command exiting 0
READY_KINDS = ("http", "tcp", "sql", "command")

#: what ``{NAME.FIELD}`` a using service may name for a used service of kind postgres (besides host and port)
POSTGRES_FIELDS = ("url", "sqlalchemy_url", "db_name", "db_user", "db_password")

#: the kinds that are a PostgreSQL to the services that use it: one server, or a replicated cluster behind HAProxy
DATABASE_KINDS = ("postgres", "patroni")

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_-]*)\.([a-z_]+)\}")


def placeholders_in(template: Any) -> set[tuple[str, str]]:
    """The ``(service, field)`` pairs of every ``{service.field}`` placeholder in a string or list/dict of them."""
    if isinstance(template, str):
        return set(_PLACEHOLDER.findall(template))
    if isinstance(template, dict):
        return set().union(*(placeholders_in(v) for v in template.values())) if template else set()
    if isinstance(template, (list, tuple)):
        return set().union(*(placeholders_in(v) for v in template)) if template else set()
    return set()


@dataclass(frozen=True)
class DatabaseDefinition:
    """A database a postgres service is created with, owned by a login role (its password made per run)."""

    name: str
    user: str


@dataclass(frozen=True)
class ReadyCheck:
    """How the suite knows a service is up, within ``timeout`` s (None: the ``start_timeout`` setting).

    ``kind`` is one of :data:`READY_KINDS`: ``http`` (``target`` a path that must
    answer 2xx; ``any_status`` when any HTTP answer counts, as for the reference
    API whose health path says 503 while its database is down), ``tcp`` (a connect
    to the service's port), ``sql`` (``target`` a query that must run without
    error on the first database of the first postgres it uses, connected
    directly: a worker that fills a table), ``command`` (``argv`` exits 0, placeholders filled).
    """

    kind: str
    target: str = ""
    argv: tuple[str, ...] = ()
    timeout: float | None = None
    any_status: bool = False


@dataclass(frozen=True)
class ServiceDefinition:
    """One ``[services.NAME]`` table of a stack file: a program (``kind = "command"``) or a PostgreSQL (``"postgres"``).

    Fields, with the placeholders of ``command``/``env``/``before_start``/``ready``
    already checked against ``uses`` (fill them with :meth:`argv`/:meth:`environment`):

    - ``name``: the service's name, as steps and faults say it (``api``, ``cache``);
    - ``kind``: ``"command"`` (any program, the default) or ``"postgres"``;
    - ``command``: argv, placeholders unfilled; empty for postgres; ``{port}`` in it
      means the service listens on the port the suite chooses (:attr:`listens`);
    - ``cwd``: absolute working directory (relative paths start at the stack file's folder);
    - ``env``: extra environment, placeholders unfilled;
    - ``stop_signal``: what a graceful stop sends (SIGTERM by default);
    - ``depends_on``: services started before this one (stopped after it), ``uses`` included;
    - ``uses``: services this one talks to; each edge (this, used) goes through the fault
      proxy, and ``{USED.host}``/``{USED.port}`` (and for a postgres ``{USED.url}``,
      ``{USED.sqlalchemy_url}``, ``{USED.db_name}``, ``{USED.db_user}``, ``{USED.db_password}``)
      point at that edge's proxy listener;
    - ``before_start``: argvs run, in order, before every start the suite makes (a start,
      a restart, the stack's start; not the restart policy's own after a crash or a kill),
      e.g. migrations and seeds; a failing one stops the start and is reported with its
      last output lines;
    - ``ready``: a :class:`ReadyCheck`; None only for a postgres (SQL ``SELECT 1``);
    - ``health_path``: the endpoint "Then the health endpoint reports ..." judges
      (``health`` in the file; only the workload's target needs one);
    - ``protocol``: what it speaks on its port, ``"tcp"`` or ``"http"`` (HTTP/1.1: the links to it,
      its users' ``uses`` edges, frame each request, so the HTTP faults act on them);
    - ``databases``: for a postgres, the databases and roles made at start (the first is
      the one ``{NAME.url}`` and the workload use);
    - ``docker_image`` / ``docker_build`` (+ ``docker_dockerfile``) / ``docker_command``:
      how the Docker backend runs a command service (``[services.NAME.docker]``).
    """

    name: str
    kind: str = "command"
    command: tuple[str, ...] = ()
    cwd: Path = Path(".")
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    depends_on: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    before_start: tuple[tuple[str, ...], ...] = ()
    ready: ReadyCheck | None = None
    health_path: str = "/health"
    protocol: str = "tcp"
    databases: tuple[DatabaseDefinition, ...] = ()
    #: docker backend: an image to run instead of the reference API's (which has Python and its requirements)
    docker_image: str = ""
    #: docker backend: the command in the container, if not ``command``
    docker_command: tuple[str, ...] = ()
    #: docker backend: a build context to build the service's own image from (with ``docker_dockerfile`` in it)
    docker_build: Path | None = None
    docker_dockerfile: str = "Dockerfile"
    #: for ``kind = "patroni"``: the cluster's nodes, etcd members and timings (:mod:`support.stack.replicated`)
    replication: ReplicationOptions | None = None

    @property
    def is_database(self) -> bool:
        """True for a PostgreSQL the suite runs (``postgres``, or ``patroni``: a replicated one)."""
        return self.kind in DATABASE_KINDS

    @property
    def listens(self) -> bool:
        """True when the service listens on a port the suite chooses (a database always does)."""
        return self.is_database or any("{port}" in part for part in self.command)

    def argv(self, values: dict[str, str]) -> list[str]:
        """The command with its placeholders filled."""
        return [render(part, values) for part in self.command]

    def environment(self, values: dict[str, str]) -> dict[str, str]:
        """The extra environment with its placeholders filled."""
        return {k: render(v, values) for k, v in self.env.items()}

    def before_start_argvs(self, values: dict[str, str]) -> list[list[str]]:
        """The ``before_start`` commands with their placeholders filled."""
        return [[render(part, values) for part in argv] for argv in self.before_start]


#: the name the single-service form of the stack file (``[api]``) used; the same object now
ApiDefinition = ServiceDefinition


@dataclass(frozen=True)
class StackDefinition:
    """A parsed stack file: ``services`` by name (in file order), the ``workload`` and the service it ``target``s."""

    path: Path
    services: dict[str, ServiceDefinition]
    workload: Workload = field(default_factory=Workload)
    #: the service the load and the record steps drive
    target: str = "api"
    #: the noun of the records in steps ("Given 3 notes exist"); the reference stack's is "users"
    records: str = "users"

    @property
    def api(self) -> ServiceDefinition:
        """The workload's target (what the single-service form called ``[api]``)."""
        return self.services[self.target]

    @property
    def database_service(self) -> ServiceDefinition:
        """The postgres the target uses (the first one listed; else the stack's first), whose first database holds
        the workload's records (the loader refuses a stack without one)."""
        for name in self.api.uses:
            if self.services[name].is_database:
                return self.services[name]
        for service in self.services.values():  # a target that reaches its database through another service
            if service.is_database:
                return service
        raise LookupError("the stack has no database")

    @property
    def database_name(self) -> str:
        """The workload's database."""
        return self.database_service.databases[0].name

    @property
    def database_user(self) -> str:
        """The role that owns the workload's database."""
        return self.database_service.databases[0].user

    @property
    def links(self) -> tuple[tuple[str, str], ...]:
        """Every (client, server) edge of ``uses``, in file order: each is a proxied link."""
        return tuple((s.name, used) for s in self.services.values() for used in s.uses)

    @property
    def start_order(self) -> tuple[str, ...]:
        """Service names in dependency order (a dependency first; file order among equals); stop runs it backwards."""
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            for dependency in self.services[name].depends_on:
                visit(dependency)
            order.append(name)

        for name in self.services:
            visit(name)
        return tuple(order)
