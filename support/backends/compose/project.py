"""A Compose project as the suite sees it: the compose file (checked by Compose itself) and its ``x-chaos:`` section.

``x-chaos`` (or the ``[compose]`` table of a stack file that names the compose file
with ``file = "..."``; its keys win) says::

    x-chaos:
      target: api                 # the service the workload drives (required)
      health: /health             # the target's health endpoint ("Then the health endpoint reports ...")
      generate:                   # variables the suite sets for each run, before Compose interpolates
        ports: [API_PORT]         #   a free port on 127.0.0.1 each
        passwords: [DB_PASSWORD]  #   a fresh random password each (kept out of the evidence)
      suite_images:               # variables set to the id of an image the suite builds (stack/docker/)
        API_IMAGE: api
      services:                   # where a service answers on 127.0.0.1, and what it is
        api: { port: "${API_PORT}" }
        postgres: { kind: postgres, port: "${PG_PORT}" }   # superuser from its POSTGRES_USER/POSTGRES_PASSWORD
        worker: { ready: { sql: "SELECT 1 FROM jobs" } } # or http: /path (2xx), tcp: true; besides Compose's
        payments: { port: "${PAY_PORT}", protocol: http } # HTTP/1.1: links to it framed per request (HTTP faults)
      links:                      # the variable of a service that carries its connection to another:
        api: { DATABASE_URL: postgres }   # the suite points it at the fault proxy's listener for that edge
      workload: { ... }           # as [workload] of a stack file; the reference users workload by default

A postgres service may also set ``user``, ``password``, ``database``, ``app_user`` and
``app_password`` (the role the target uses; else read from the link's URL).

Networks: this repository's files put every service on the host's network
(``network_mode: host``, listening on 127.0.0.1), so a link's variable can point at the
proxy, which listens on 127.0.0.1. A project on a bridge network runs the same way on
your machine for everything but links (a container cannot reach the host's loopback):
leave ``links`` out there, and the process faults (kill, stop, pause, restart) still act
on every service. A kill signals every process of the container but PID 1: give a
service an init (``init: true``, or tini as its entrypoint) so the kill reaches it.
Every problem is one :class:`StackFileError` line naming the file and the field.
"""

from __future__ import annotations

import json
import secrets
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from support import REPO_ROOT
from support.backends.compose.cli import ComposeCommand, ComposeFailed
from support.core.config import Settings
from support.core.ports import LOOPBACK
from support.stack.operations import WorkloadError
from support.stack.service_tables import StackFileError
from support.stack.workload import Workload, parse_workload

__all__ = ["ComposeProject", "ComposeService", "PostgresInfo", "compose_file_of", "load_compose_project"]

_COMPOSE_SUFFIXES = (".yaml", ".yml", ".json")
_XCHAOS_KEYS = {"target", "health", "generate", "suite_images", "services", "links", "workload"}
_SERVICE_KEYS = {"kind", "port", "ready", "protocol", "user", "password", "database", "app_user", "app_password"}
_READY_KINDS = ("http", "tcp", "sql")


@dataclass(frozen=True)
class PostgresInfo:
    """The superuser and the application role of a PostgreSQL service of the project."""

    user: str
    password: str
    database: str
    app_user: str
    app_password: str


@dataclass(frozen=True)
class ComposeService:
    """One service of the project: its name, its port on 127.0.0.1 (0: none), its kind and dependencies."""

    name: str
    port: int
    kind: str = "command"
    depends_on: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    postgres: PostgresInfo | None = None
    #: x-chaos ``ready``: (``http``, path answering 2xx) | (``tcp``, "") | (``sql``, query on the database); () none
    ready: tuple[()] | tuple[str, str] = ()
    #: x-chaos ``protocol``: what the links to it carry, ``tcp`` (bytes) or ``http`` (requests framed, HTTP faults)
    protocol: str = "tcp"


@dataclass(frozen=True)
class ComposeProject:
    """A compose file Compose accepted, with the run's variables filled in."""

    file: Path
    services: dict[str, ComposeService]
    target: str
    health_path: str
    workload: Workload
    #: (using service, used service) -> the variable of the using service that carries the connection
    links: dict[tuple[str, str], str]
    #: the variables the suite sets for the CLI (ports, passwords, image ids)
    env: dict[str, str]
    secrets: tuple[str, ...]
    suite_images: dict[str, str]

    @property
    def path(self) -> Path:
        """The compose file (named as a stack definition's ``path``, for the checks that read either)."""
        return self.file

    @property
    def records(self) -> str:
        """The noun of the workload's records in steps ("Given 3 users exist")."""
        return str(getattr(self.workload, "records", "users"))

    @property
    def start_order(self) -> tuple[str, ...]:
        """The services, each after what it depends on (Compose's own order)."""
        order: list[str] = []

        def visit(name: str) -> None:
            if name not in order:
                for dependency in self.services[name].depends_on:
                    visit(dependency)
                order.append(name)

        for name in sorted(self.services):
            visit(name)
        return tuple(order)

    def database(self) -> ComposeService:
        """The PostgreSQL service the workload's records live in (the one the target uses, else the only one)."""
        used = [b for (a, b) in self.links if a == self.target and self.services[b].kind == "postgres"]
        candidates = used or [s.name for s in self.services.values() if s.kind == "postgres"]
        if not candidates:
            raise _fail(
                self.file,
                "x-chaos.services: no service has kind: postgres; the suite needs the database "
                "the workload writes to (e.g. postgres: { kind: postgres, port: 5432 })",
            )
        return self.services[candidates[0]]


def _fail(path: Path, message: str) -> StackFileError:
    return StackFileError(f"{path}: {message}")


def compose_file_of(settings: Settings) -> tuple[Path, dict] | None:
    """The compose file the settings select, with the ``[compose]`` table that named it ({} for a compose file
    given directly); None when the stack file is an ordinary stack file."""
    path = Path(settings.stack_file)
    path = path if path.is_absolute() else REPO_ROOT / path
    if path.suffix in _COMPOSE_SUFFIXES:
        return path.resolve(), {}
    if path.suffix != ".toml" or not path.is_file():
        return None
    try:
        table = tomllib.loads(path.read_text()).get("compose")
    except tomllib.TOMLDecodeError:
        return None  # the stack file loader says what is wrong with it
    if not isinstance(table, dict):
        return None
    if not isinstance(table.get("file"), str):
        raise _fail(path, '[compose] needs file = "path/to/compose.yaml" (relative to this file)')
    data = tomllib.loads(path.read_text())
    options = {k: v for k, v in table.items() if k != "file"}
    if "workload" in data:
        options["workload"] = data["workload"]
    return (path.parent / table["file"]).resolve(), options


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for one in sockets:  # bound at the same time, so the kernel hands out different ports
            one.bind((LOOPBACK, 0))
        return [one.getsockname()[1] for one in sockets]
    finally:
        for one in sockets:
            one.close()


def _names(path: Path, where: str, value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, f"{where} must be a list of variable names, got {value!r}")
    return list(value)


def _port(path: Path, name: str, declared: Any, config: dict) -> int:
    """The service's port on 127.0.0.1: x-chaos's ``port``, else the first port Compose publishes (0: none)."""
    if declared is None:
        published = [p.get("published") for p in config.get("ports") or [] if p.get("published")]
        declared = published[0] if published else 0
    try:
        return int(declared)
    except (TypeError, ValueError):
        raise _fail(path, f"x-chaos.services.{name}.port={declared!r} is not a port number") from None


def _postgres(path: Path, name: str, options: dict, env: dict[str, str], link_urls: list[str]) -> PostgresInfo:
    user = str(options.get("user") or env.get("POSTGRES_USER") or "postgres")
    password = options.get("password") or env.get("POSTGRES_PASSWORD")
    if not password:
        raise _fail(
            path,
            f"x-chaos.services.{name}: the suite needs the superuser's password for resets and "
            "database faults: set password, or POSTGRES_PASSWORD in the service's environment",
        )
    database = str(options.get("database") or env.get("POSTGRES_DB") or env.get("APP_DB") or "postgres")
    app_user, app_password = options.get("app_user"), options.get("app_password")
    for url in link_urls:  # the role the target connects as, from its own connection URL
        parts = urlsplit(url)
        app_user, app_password = app_user or parts.username, app_password or parts.password
    return PostgresInfo(user, str(password), database, str(app_user or user), str(app_password or password))


def _ready(path: Path, name: str, value: object, port: int) -> tuple[()] | tuple[str, str]:
    """x-chaos's ``ready`` of a service: how the suite knows it is up, besides Compose's health check."""
    if value is None:
        return ()
    where = f"x-chaos.services.{name}.ready"
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _READY_KINDS:
        raise _fail(
            path,
            f"{where} takes one of http: /path (answers 2xx), tcp: true (its port accepts), "
            f"sql: QUERY (runs on the database), got {value!r}",
        )
    kind, target = next(iter(value.items()))
    if kind in ("http", "tcp") and not port:
        raise _fail(path, f"{where}: {kind} needs the service's port: set x-chaos.services.{name}.port")
    if kind == "http" and not str(target).startswith("/"):
        raise _fail(path, f"{where}: http={target!r} must be a path starting with /")
    return kind, "" if kind == "tcp" else str(target)


def load_compose_project(file: Path, options: dict, project: str | None = None) -> ComposeProject:
    """Check ``file`` with Compose (``config``) and read its ``x-chaos``; a refusal is one line.

    Ports and passwords the section asks for are generated here, once per call.
    """
    file = Path(file).resolve()  # Compose runs in the file's folder
    if not file.is_file():
        raise _fail(file, "no such compose file; set stack_file to an existing compose file")
    raw = _config(file, project, {}, ["--no-interpolate"])
    chaos = {**(raw.get("x-chaos") or {}), **options}
    unknown = sorted(set(chaos) - _XCHAOS_KEYS)
    if unknown:
        raise _fail(file, f"x-chaos: unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_XCHAOS_KEYS))}")
    generate = chaos.get("generate") or {}
    env: dict[str, str] = {}
    port_names = _names(file, "x-chaos.generate.ports", generate.get("ports"))
    env.update(zip(port_names, map(str, _free_ports(len(port_names))), strict=True))
    passwords = {
        n: secrets.token_urlsafe(18) for n in _names(file, "x-chaos.generate.passwords", generate.get("passwords"))
    }
    env.update(passwords)
    suite_images = dict(chaos.get("suite_images") or {})
    env.update({variable: "chaos-suite/placeholder" for variable in suite_images})  # the id is set at start
    config = _config(file, project, env, [])
    if not chaos.get("target"):  # after Compose's own checks: its refusal of the file comes first
        raise _fail(
            file,
            "no x-chaos section says which service the workload drives: add x-chaos: { target: "
            "SERVICE } to the compose file (or [compose] target in a stack file)",
        )
    return _project(
        file, config, {**(config.get("x-chaos") or {}), **options}, env, tuple(passwords.values()), suite_images
    )


def _config(file: Path, project: str | None, env: dict[str, str], extra: list[str]) -> dict:
    command = ComposeCommand([file], project, env, file.parent)
    try:
        return json.loads(command.run("config", "--format", "json", *extra, timeout=60))
    except ComposeFailed as error:
        raise _fail(file, f"Compose refuses it: {str(error).split('failed: ', 1)[-1]}") from None


def _project(
    file: Path, config: dict, chaos: dict, env: dict[str, str], passwords: tuple[str, ...], suite_images: dict[str, str]
) -> ComposeProject:
    services = config.get("services") or {}
    target = str(chaos["target"])
    if target not in services:
        raise _fail(
            file, f"x-chaos.target={target!r} is not a service of the file; its services: {', '.join(sorted(services))}"
        )
    links: dict[tuple[str, str], str] = {}
    for user, variables in (chaos.get("links") or {}).items():
        if user not in services or not isinstance(variables, dict):
            raise _fail(
                file,
                f"x-chaos.links.{user}: must name a service of the file and map its variables to "
                "the services they reach, e.g. api: {{ DATABASE_URL: postgres }}",
            )
        for variable, used in variables.items():
            if used not in services:
                raise _fail(file, f"x-chaos.links.{user}.{variable}: {used!r} is not a service of the file")
            if variable not in (services[user].get("environment") or {}):
                raise _fail(
                    file,
                    f"x-chaos.links.{user}.{variable}: service {user} has no variable {variable} in its environment",
                )
            links[(user, str(used))] = str(variable)
    declared = chaos.get("services") or {}
    described: dict[str, ComposeService] = {}
    for name, config_of in services.items():
        options = declared.get(name) or {}
        extra = sorted(set(options) - _SERVICE_KEYS)
        if extra:
            raise _fail(
                file,
                f"x-chaos.services.{name}: unknown field(s) {', '.join(extra)}; "
                f"valid: {', '.join(sorted(_SERVICE_KEYS))}",
            )
        service_env = {k: str(v) for k, v in (config_of.get("environment") or {}).items() if v is not None}
        kind = str(options.get("kind", "command"))
        if kind not in ("command", "postgres"):
            raise _fail(file, f"x-chaos.services.{name}.kind={kind!r}: use command (the default) or postgres")
        urls = [services[a]["environment"][v] for (a, b), v in links.items() if b == name and a == target]
        port = _port(file, name, options.get("port"), config_of)
        protocol = options.get("protocol", "tcp")
        if protocol not in ("tcp", "http") or (protocol == "http" and (kind != "command" or not port)):
            raise _fail(
                file,
                f'x-chaos.services.{name}.protocol={protocol!r}: "tcp" (the default) or "http" (a command service '
                "with a port that speaks HTTP/1.1: the links to it are framed per request, so the HTTP faults act "
                "on them)",
            )
        described[name] = ComposeService(
            name,
            port,
            kind,
            tuple(config_of.get("depends_on") or {}),
            service_env,
            _postgres(file, name, options, service_env, urls) if kind == "postgres" else None,
            _ready(file, name, options.get("ready"), port),
            str(protocol),
        )
    if not described[target].port:
        raise _fail(
            file,
            f"x-chaos.services.{target}.port: the suite must know where the target answers on "
            '127.0.0.1 (a number, or "${VAR}" with VAR in x-chaos.generate.ports)',
        )
    health = str(chaos.get("health", "/health"))
    if not health.startswith("/"):
        raise _fail(file, f"x-chaos.health={health!r} must start with /")
    try:
        workload = (
            parse_workload(chaos.get("workload") or {}, f"{file}: x-chaos", prefix=False)
            if chaos.get("workload")
            else Workload()
        )
    except WorkloadError as error:
        raise _fail(file, f"x-chaos.workload: {error}") from None
    project = ComposeProject(file, described, target, health, workload, links, env, passwords, suite_images)
    project.database()  # refuse a project without a database now, not mid-run
    return project
