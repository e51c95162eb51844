"""The service tables of a stack file: each ``[services.NAME]`` checked and made a :class:`ServiceDefinition`.

A ``kind = "command"`` table (:func:`command_service`: its command, environment,
``ready`` check and ``docker`` table) or a ``kind = "postgres"`` one
(:func:`postgres_service`), then the checks across services (:func:`check_graph`:
``uses`` and ``depends_on`` name other services, placeholders name used ones, no
dependency cycle). :class:`StackFileError` is raised for every problem, one line
naming the file, the table and the field; :mod:`support.stack.stack_file` reads the
file and gathers the services.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from support.stack.definitions import (
    POSTGRES_FIELDS,
    READY_KINDS,
    DatabaseDefinition,
    ReadyCheck,
    ServiceDefinition,
    placeholders_in,
)
from support.stack.replicated import REPLICATION_FIELDS, parse_replication

__all__ = [
    "StackFileError",
    "LEGACY_DATABASE_KEYS",
    "command_service",
    "postgres_service",
    "patroni_service",
    "check_graph",
    "fail",
]

#: the placeholders that stand for the one postgres a service uses
LEGACY_DATABASE_KEYS = ("database_url", "sqlalchemy_url", "db_host", "db_port", "db_name", "db_user", "db_password")

_COMMAND_FIELDS = (
    "kind",
    "command",
    "cwd",
    "env",
    "stop_signal",
    "depends_on",
    "uses",
    "before_start",
    "ready",
    "health",
    "protocol",
    "docker",
)
_POSTGRES_FIELDS = ("kind", "databases", "depends_on")


class StackFileError(ValueError):
    """The stack file is missing or malformed; the message names the file, the field and the fix."""


def fail(path: Path, message: str) -> StackFileError:
    return StackFileError(f"{path}: {message}")


def _strings(path: Path, where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail(path, f"{where} must be a list of strings (or one string), got {value!r}")


def _names(path: Path, where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise fail(path, f"{where} must be a list of service names, got {value!r}")


def _ready(path: Path, where: str, value: Any) -> ReadyCheck:
    if not isinstance(value, dict):
        raise fail(path, f'{where} ready must be a table such as {{ http = "/health", timeout = 30 }}')
    kinds = [kind for kind in READY_KINDS if kind in value]
    unknown = sorted(set(value) - set(READY_KINDS) - {"timeout", "any_status"})
    if unknown or len(kinds) != 1:
        raise fail(
            path,
            f"{where} ready takes exactly one of {', '.join(READY_KINDS)} (and timeout, any_status); "
            f"got {', '.join(sorted(value)) or 'nothing'}",
        )
    kind = kinds[0]
    timeout = value.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise fail(path, f"{where} ready timeout={timeout!r} must be a number of seconds greater than 0")
    target = value[kind]
    argv: tuple[str, ...] = ()
    if kind == "http" and not (isinstance(target, str) and target.startswith("/")):
        raise fail(path, f"{where} ready http={target!r} must be a path starting with /")
    if kind == "tcp" and target is not True:
        raise fail(path, f"{where} ready tcp must be true")
    if kind == "sql" and not (isinstance(target, str) and target.strip()):
        raise fail(path, f'{where} ready sql must be a query such as "SELECT 1"')
    if kind == "command":
        argv, target = _strings(path, f"{where} ready command", target), ""
    return ReadyCheck(
        kind,
        target if isinstance(target, str) else "",
        argv,
        float(timeout) if timeout is not None else None,
        bool(value.get("any_status", False)),
    )


def _docker(path: Path, where: str, docker: Any) -> dict:
    where = f"{where[:-1]}.docker]"
    if not isinstance(docker, dict) or set(docker) - {"image", "build", "dockerfile", "command"}:
        raise fail(
            path,
            f"{where} takes image (an image to run instead of the reference API's) or build (a "
            "folder with a Dockerfile to build it from) and dockerfile, and command",
        )
    if "image" in docker and "build" in docker:
        raise fail(path, f"{where} takes image or build, not both")
    if "dockerfile" in docker and "build" not in docker:
        raise fail(path, f'{where} dockerfile names a file in the build folder: add build = "folder"')
    dockerfile = str(docker.get("dockerfile", "Dockerfile"))
    build = None
    if "build" in docker:
        build = (path.parent / str(docker["build"])).resolve()
        if not (build / dockerfile).is_file():
            raise fail(path, f"{where} build = {docker['build']!r}: there is no {build / dockerfile}")
    return {
        "docker_image": str(docker.get("image", "")),
        "docker_build": build,
        "docker_dockerfile": dockerfile,
        "docker_command": _strings(path, f"{where} command", docker["command"]) if "command" in docker else (),
    }


def postgres_service(path: Path, name: str, table: dict, where: str) -> ServiceDefinition:
    unknown = sorted(set(table) - set(_POSTGRES_FIELDS))
    if unknown:
        raise fail(
            path,
            f'unknown {where} field(s) {", ".join(unknown)}; valid for kind = "postgres": '
            f"{', '.join(_POSTGRES_FIELDS)}",
        )
    listed = table.get("databases", [{"name": "users", "user": "app"}])
    if (
        not isinstance(listed, list)
        or not listed
        or not all(
            isinstance(d, dict) and set(d) <= {"name", "user"} and isinstance(d.get("name"), str) for d in listed
        )
    ):
        raise fail(path, f'{where} databases must be a list such as [{{ name = "app", user = "app" }}]')
    databases = tuple(DatabaseDefinition(d["name"], str(d.get("user", "app"))) for d in listed)
    return ServiceDefinition(
        name=name,
        kind="postgres",
        databases=databases,
        depends_on=_names(path, f"{where} depends_on", table.get("depends_on", [])),
    )


def patroni_service(path: Path, name: str, table: dict, where: str) -> ServiceDefinition:
    """A ``kind = "patroni"`` table: a replicated PostgreSQL (:mod:`support.stack.replicated`), its databases
    made on the primary as a postgres service's are."""
    options = {key: table.pop(key) for key in REPLICATION_FIELDS if key in table}
    table.pop("kind", None)
    unknown = sorted(set(table) - set(_POSTGRES_FIELDS))
    if unknown:
        raise fail(
            path,
            f'unknown {where} field(s) {", ".join(unknown)}; valid for kind = "patroni": '
            f"{', '.join(_POSTGRES_FIELDS + REPLICATION_FIELDS)}",
        )
    try:
        replication = parse_replication(options, where)
    except ValueError as error:
        raise fail(path, str(error)) from None
    database = postgres_service(path, name, table, where)
    return ServiceDefinition(
        name=name,
        kind="patroni",
        databases=database.databases,
        depends_on=database.depends_on,
        replication=replication,
    )


def command_service(path: Path, name: str, table: dict, where: str, is_target: bool) -> ServiceDefinition:
    unknown = sorted(set(table) - set(_COMMAND_FIELDS))
    if unknown:
        raise fail(path, f"unknown {where} field(s) {', '.join(unknown)}; valid: {', '.join(_COMMAND_FIELDS)}")
    if "command" not in table:
        raise fail(
            path,
            f'{where} needs a command, e.g. command = ["{{python}}", "-m", "uvicorn", '
            '"app:app", "--host", "{host}", "--port", "{port}"]',
        )
    command = _strings(path, f"{where} command", table["command"])
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise fail(path, f"{where} env must be a table of strings")
    try:
        stop_signal = signal.Signals[table.get("stop_signal", "SIGTERM")]
    except KeyError:
        raise fail(
            path, f"{where} stop_signal={table.get('stop_signal')!r} is not a signal name like SIGTERM"
        ) from None
    health = table.get("health", "/health")
    if not isinstance(health, str) or not health.startswith("/"):
        raise fail(path, f"{where} health={health!r} must start with /")
    before = table.get("before_start", [])
    if not isinstance(before, list):
        raise fail(path, f'{where} before_start must be a list of commands, e.g. [["{{python}}", "migrate.py"]]')
    uses = _names(path, f"{where} uses", table.get("uses", []))
    depends = _names(path, f"{where} depends_on", table.get("depends_on", []))
    listens = any("{port}" in part for part in command)
    if is_target and not listens:
        raise fail(path, f"{where} command must use {{port}}: the suite chooses the port the service listens on")
    if "ready" in table:
        ready = _ready(path, where, table["ready"])
    elif listens:  # as the suite always did: up when the health path answers at all, or when it accepts a connect
        ready = ReadyCheck("http", health, any_status=True) if is_target else ReadyCheck("tcp")
    else:
        raise fail(
            path,
            f"{where} needs ready = {{ command = [...] }} (or sql for a database it fills): its "
            "command has no {port}, so the suite cannot probe it",
        )
    protocol = table.get("protocol", "tcp")
    if protocol not in ("tcp", "http") or (protocol == "http" and not listens):
        raise fail(
            path,
            f'{where} protocol={protocol!r}: "tcp" (the default) or "http" (HTTP/1.1 on its {{port}}: the links '
            "to it are framed per request, so the HTTP faults act on them)",
        )
    if ready.kind in ("http", "tcp") and not listens:
        raise fail(
            path, f"{where} ready {ready.kind} needs a port: put {{port}} in the command, or use ready command = [...]"
        )
    return ServiceDefinition(
        name=name,
        command=command,
        cwd=Path(table.get("cwd", ".")).resolve(),
        env=dict(env),
        stop_signal=stop_signal,
        depends_on=tuple(dict.fromkeys(depends + uses)),
        uses=uses,
        ready=ready,
        health_path=health,
        protocol=protocol,
        before_start=tuple(_strings(path, f"{where} before_start", argv) for argv in before),
        **_docker(path, where, table.get("docker", {})),
    )


def check_graph(path: Path, services: dict[str, ServiceDefinition], where: dict[str, str]) -> None:
    known = ", ".join(services)
    for service in services.values():
        for field_name, names in (("uses", service.uses), ("depends_on", service.depends_on)):
            for other in names:
                if other not in services or other == service.name:
                    raise fail(
                        path,
                        f"{where[service.name]} {field_name} names {other!r}, which is not another "
                        f"service of this stack; services: {known}",
                    )
                if field_name == "uses" and not services[other].listens:
                    raise fail(
                        path,
                        f"{where[service.name]} uses {other!r}, which listens on no {{port}}: a "
                        "link joins a client to a port; list it in depends_on instead",
                    )
        if (
            service.ready
            and service.ready.kind == "sql"
            and service.kind == "command"
            and not any(services[u].is_database for u in service.uses)
        ):
            raise fail(
                path,
                f"{where[service.name]} ready sql runs on a postgres the service uses; add one to "
                "its uses, or use ready command = [...]",
            )
        fields = {
            "command": service.command,
            "env": service.env,
            "before_start": service.before_start,
            "ready": service.ready.argv if service.ready else (),
            "docker command": service.docker_command,
        }
        for field_name, template in fields.items():
            for used, attribute in sorted(placeholders_in(template)):
                if used not in service.uses:
                    raise fail(
                        path,
                        f"{where[service.name]} {field_name} has {{{used}.{attribute}}}, but "
                        f'{used!r} is not in its uses; add uses = ["{used}"] (each used service '
                        "is reached through the fault proxy)",
                    )
                allowed = ("host", "port") + (POSTGRES_FIELDS if services[used].is_database else ())
                if attribute not in allowed:
                    raise fail(
                        path,
                        f"{where[service.name]} {field_name} has {{{used}.{attribute}}}; "
                        f"{used} offers {', '.join('{' + used + '.' + a + '}' for a in allowed)}",
                    )
            if (
                any("{" + key + "}" in repr(template) for key in LEGACY_DATABASE_KEYS)
                and sum(services[u].is_database for u in service.uses) != 1
            ):
                raise fail(
                    path,
                    f"{where[service.name]} {field_name} has a database placeholder such as "
                    "{database_url}, which needs exactly one postgres in its uses",
                )
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            cycle = trail[trail.index(name) :] + (name,)
            raise fail(
                path,
                f"{where[cycle[0]]} depends_on: a dependency cycle {' -> '.join(cycle)}; no service can start first",
            )
        state[name] = "open"
        for other in services[name].depends_on:
            visit(other, trail + (name,))
        state[name] = "done"

    for name in services:
        visit(name, ())
