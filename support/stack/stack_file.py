"""The stack file: the services the suite runs, how they link and start, and the workload it drives.

Bring your own service by writing a copy of ``stack/stack.toml`` and pointing
the ``stack_file`` setting at it: no Python to edit. ``[services.NAME]`` tables
describe the services (see :class:`~support.stack.definitions.ServiceDefinition`
for each field); the single-service form of earlier versions (``[api]``,
``[database]``, ``[workload]``) still loads, as ``api`` using ``postgres``.
Placeholders in commands and environments are filled in at start:

``{python}`` the suite's interpreter, ``{host}``/``{port}`` where the service must
listen, ``{repo}`` the suite's directory, ``{stack_dir}`` the stack file's directory;
for each used service ``{NAME.host}``, ``{NAME.port}`` (the fault proxy's listener
for that link) and for a postgres ``{NAME.url}`` (``postgresql://user:password@host:port/db``),
``{NAME.sqlalchemy_url}``, ``{NAME.db_name}``, ``{NAME.db_user}``, ``{NAME.db_password}``;
``{database_url}``, ``{sqlalchemy_url}``, ``{db_host}``, ``{db_port}``, ``{db_name}``,
``{db_user}``, ``{db_password}`` are the same for the one postgres a service uses.
"""

from __future__ import annotations

import signal
import tomllib
from pathlib import Path
from typing import Any

from support import REPO_ROOT
from support.core.config import Settings
from support.stack import workload as workload_module
from support.stack.definitions import (
    POSTGRES_FIELDS,
    READY_KINDS,
    ApiDefinition,
    DatabaseDefinition,
    ReadyCheck,
    ServiceDefinition,
    StackDefinition,
    placeholders_in,
)
from support.stack.workload import Workload, WorkloadError

__all__ = [
    "ApiDefinition",
    "ServiceDefinition",
    "StackDefinition",
    "StackFileError",
    "load_stack_file",
    "stack_definition",
    "DEFAULT_STACK_FILE",
    "LEGACY_DATABASE_KEYS",
]

DEFAULT_STACK_FILE = REPO_ROOT / "stack" / "stack.toml"

#: the placeholders that stand for the one postgres a service uses
LEGACY_DATABASE_KEYS = ("database_url", "sqlalchemy_url", "db_host", "db_port", "db_name", "db_user", "db_password")

_SECTIONS = ("extends", "services", "workload", "api", "database")
_LEGACY_API = ("command", "cwd", "env", "health_path", "stop_signal", "docker")
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
    "docker",
)
_POSTGRES_FIELDS = ("kind", "databases", "depends_on")
_LEGACY = "__legacy__"  # marks a service written as [api], so messages name the table the user wrote


class StackFileError(ValueError):
    """The stack file is missing or malformed; the message names the file, the field and the fix."""


def _fail(path: Path, message: str) -> StackFileError:
    return StackFileError(f"{path}: {message}")


def _strings(path: Path, where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(path, f"{where} must be a list of strings (or one string), got {value!r}")


def _names(path: Path, where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(path, f"{where} must be a list of service names, got {value!r}")


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _upgrade(path: Path, data: dict) -> dict:
    """The single-service form's ``[api]``/``[database]`` as ``[services.api]``/``[services.postgres]``."""
    services = data.setdefault("services", {})
    if "api" in data:
        api = data.pop("api")
        if not isinstance(api, dict):
            raise _fail(path, "[api] must be a table")
        unknown = sorted(set(api) - set(_LEGACY_API))
        if unknown:
            raise _fail(path, f"unknown [api] field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_LEGACY_API))}")
        if "health_path" in api:
            api["health"] = api.pop("health_path")
        services["api"] = {**api, _LEGACY: True}
    if "database" in data:
        database = data.pop("database")
        services["postgres"] = {
            "kind": "postgres",
            "databases": [{"name": database.get("name", "users"), "user": database.get("user", "app")}],
        }
    return data


def _anchor(data: dict, folder: Path) -> None:
    """Make the relative ``cwd`` and ``docker.build`` of ``data``'s services absolute, from ``folder``."""
    for table in data.get("services", {}).values():
        if isinstance(table, dict) and table.get("kind", "command") == "command":
            table["cwd"] = str((folder / table.get("cwd", ".")).resolve())
            docker = table.get("docker")
            if isinstance(docker, dict) and "build" in docker:
                docker["build"] = str((folder / str(docker["build"])).resolve())


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The file's tables, merged over those of the file it ``extends``; relative paths kept per file."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(
            path, f"no such stack file; set stack_file to an existing file (the default is {DEFAULT_STACK_FILE})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise _fail(path, f"not valid TOML: {error}") from None
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise _fail(path, f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(_SECTIONS)}")
    parent = data.pop("extends", None)
    legacy_root = parent is None and "services" not in data
    data = _upgrade(path, data)
    if parent is None:
        if legacy_root:  # the single-service form: api uses the one postgres
            data["services"].setdefault("postgres", {"kind": "postgres"})
            if "api" in data["services"]:
                data["services"]["api"].setdefault("uses", ["postgres"])
        return data
    base_path = (path.parent / parent).resolve()
    if base_path in seen:
        raise _fail(path, f"extends {parent!r} in a loop")
    base = _read(base_path, seen + (base_path,))
    # paths a file inherits stay relative to the file that wrote them
    _anchor(base, base_path.parent)
    return _merge(base, data)


def _ready(path: Path, where: str, value: Any) -> ReadyCheck:
    if not isinstance(value, dict):
        raise _fail(path, f'{where} ready must be a table such as {{ http = "/health", timeout = 30 }}')
    kinds = [kind for kind in READY_KINDS if kind in value]
    unknown = sorted(set(value) - set(READY_KINDS) - {"timeout", "any_status"})
    if unknown or len(kinds) != 1:
        raise _fail(
            path,
            f"{where} ready takes exactly one of {', '.join(READY_KINDS)} (and timeout, any_status); "
            f"got {', '.join(sorted(value)) or 'nothing'}",
        )
    kind = kinds[0]
    timeout = value.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise _fail(path, f"{where} ready timeout={timeout!r} must be a number of seconds greater than 0")
    target = value[kind]
    argv: tuple[str, ...] = ()
    if kind == "http" and not (isinstance(target, str) and target.startswith("/")):
        raise _fail(path, f"{where} ready http={target!r} must be a path starting with /")
    if kind == "tcp" and target is not True:
        raise _fail(path, f"{where} ready tcp must be true")
    if kind == "sql" and not (isinstance(target, str) and target.strip()):
        raise _fail(path, f'{where} ready sql must be a query such as "SELECT 1"')
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
        raise _fail(
            path,
            f"{where} takes image (an image to run instead of the reference API's) or build (a "
            "folder with a Dockerfile to build it from) and dockerfile, and command",
        )
    if "image" in docker and "build" in docker:
        raise _fail(path, f"{where} takes image or build, not both")
    if "dockerfile" in docker and "build" not in docker:
        raise _fail(path, f'{where} dockerfile names a file in the build folder: add build = "folder"')
    dockerfile = str(docker.get("dockerfile", "Dockerfile"))
    build = None
    if "build" in docker:
        build = (path.parent / str(docker["build"])).resolve()
        if not (build / dockerfile).is_file():
            raise _fail(path, f"{where} build = {docker['build']!r}: there is no {build / dockerfile}")
    return {
        "docker_image": str(docker.get("image", "")),
        "docker_build": build,
        "docker_dockerfile": dockerfile,
        "docker_command": _strings(path, f"{where} command", docker["command"]) if "command" in docker else (),
    }


def _postgres(path: Path, name: str, table: dict, where: str) -> ServiceDefinition:
    unknown = sorted(set(table) - set(_POSTGRES_FIELDS))
    if unknown:
        raise _fail(
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
        raise _fail(path, f'{where} databases must be a list such as [{{ name = "app", user = "app" }}]')
    databases = tuple(DatabaseDefinition(d["name"], str(d.get("user", "app"))) for d in listed)
    return ServiceDefinition(
        name=name,
        kind="postgres",
        databases=databases,
        depends_on=_names(path, f"{where} depends_on", table.get("depends_on", [])),
    )


def _command(path: Path, name: str, table: dict, where: str, is_target: bool) -> ServiceDefinition:
    unknown = sorted(set(table) - set(_COMMAND_FIELDS))
    if unknown:
        raise _fail(path, f"unknown {where} field(s) {', '.join(unknown)}; valid: {', '.join(_COMMAND_FIELDS)}")
    if "command" not in table:
        raise _fail(
            path,
            f'{where} needs a command, e.g. command = ["{{python}}", "-m", "uvicorn", '
            '"app:app", "--host", "{host}", "--port", "{port}"]',
        )
    command = _strings(path, f"{where} command", table["command"])
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise _fail(path, f"{where} env must be a table of strings")
    try:
        stop_signal = signal.Signals[table.get("stop_signal", "SIGTERM")]
    except KeyError:
        raise _fail(
            path, f"{where} stop_signal={table.get('stop_signal')!r} is not a signal name like SIGTERM"
        ) from None
    health = table.get("health", "/health")
    if not isinstance(health, str) or not health.startswith("/"):
        raise _fail(path, f"{where} health={health!r} must start with /")
    before = table.get("before_start", [])
    if not isinstance(before, list):
        raise _fail(path, f'{where} before_start must be a list of commands, e.g. [["{{python}}", "migrate.py"]]')
    uses = _names(path, f"{where} uses", table.get("uses", []))
    depends = _names(path, f"{where} depends_on", table.get("depends_on", []))
    listens = any("{port}" in part for part in command)
    if is_target and not listens:
        raise _fail(path, f"{where} command must use {{port}}: the suite chooses the port the service listens on")
    if "ready" in table:
        ready = _ready(path, where, table["ready"])
    elif listens:  # as the suite always did: up when the health path answers at all, or when it accepts a connect
        ready = ReadyCheck("http", health, any_status=True) if is_target else ReadyCheck("tcp")
    else:
        raise _fail(
            path,
            f"{where} needs ready = {{ command = [...] }} (or sql for a database it fills): its "
            "command has no {port}, so the suite cannot probe it",
        )
    if ready.kind in ("http", "tcp") and not listens:
        raise _fail(
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
        before_start=tuple(_strings(path, f"{where} before_start", argv) for argv in before),
        **_docker(path, where, table.get("docker", {})),
    )


def _check_graph(path: Path, services: dict[str, ServiceDefinition], where: dict[str, str]) -> None:
    known = ", ".join(services)
    for service in services.values():
        for field_name, names in (("uses", service.uses), ("depends_on", service.depends_on)):
            for other in names:
                if other not in services or other == service.name:
                    raise _fail(
                        path,
                        f"{where[service.name]} {field_name} names {other!r}, which is not another "
                        f"service of this stack; services: {known}",
                    )
                if field_name == "uses" and not services[other].listens:
                    raise _fail(
                        path,
                        f"{where[service.name]} uses {other!r}, which listens on no {{port}}: a "
                        "link joins a client to a port; list it in depends_on instead",
                    )
        if (
            service.ready
            and service.ready.kind == "sql"
            and service.kind == "command"
            and not any(services[u].kind == "postgres" for u in service.uses)
        ):
            raise _fail(
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
                    raise _fail(
                        path,
                        f"{where[service.name]} {field_name} has {{{used}.{attribute}}}, but "
                        f'{used!r} is not in its uses; add uses = ["{used}"] (each used service '
                        "is reached through the fault proxy)",
                    )
                allowed = ("host", "port") + (POSTGRES_FIELDS if services[used].kind == "postgres" else ())
                if attribute not in allowed:
                    raise _fail(
                        path,
                        f"{where[service.name]} {field_name} has {{{used}.{attribute}}}; "
                        f"{used} offers {', '.join('{' + used + '.' + a + '}' for a in allowed)}",
                    )
            if (
                any("{" + key + "}" in repr(template) for key in LEGACY_DATABASE_KEYS)
                and sum(services[u].kind == "postgres" for u in service.uses) != 1
            ):
                raise _fail(
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
            raise _fail(
                path,
                f"{where[cycle[0]]} depends_on: a dependency cycle {' -> '.join(cycle)}; no service can start first",
            )
        state[name] = "open"
        for other in services[name].depends_on:
            visit(other, trail + (name,))
        state[name] = "done"

    for name in services:
        visit(name, ())


def _workload(path: Path, table: Any) -> tuple[Workload, str, str]:
    """The workload, the service it targets and its records' noun."""
    if not isinstance(table, dict):
        raise _fail(path, "[workload] must be a table")
    table = dict(table)
    target, records = table.get("target", "api"), table.get("records", "users")
    parse = getattr(workload_module, "parse_workload", None)
    try:
        if parse is not None:
            workload = parse(table, f"{path}: [workload]")
        else:  # the flat form of today, until the general workload parser lands
            table.pop("target", None)
            table.pop("records", None)
            workload = Workload.from_dict(table)
    except (WorkloadError, TypeError) as error:
        message = str(error)
        raise (StackFileError(message) if str(path) in message else _fail(path, f"[workload] {message}")) from None
    if not (isinstance(records, str) and records.isalpha() and records.islower()):
        raise _fail(
            path,
            f"[workload] records={records!r} must be one lower-case word, the plural noun the "
            'steps use ("notes" for "Given 3 notes exist")',
        )
    target = str(getattr(workload, "target", None) or target)
    return workload, target, str(getattr(workload, "records", None) or records)


def load_stack_file(path: Path) -> StackDefinition:
    """Read and validate a stack file; every problem is one line naming the file, the service and the field.

    ``extends = "other.toml"`` at the top starts from another stack file and
    overrides what this one sets (tables are merged key by key).
    """
    path = Path(path)
    data = _read(path.resolve())
    _anchor(data, path.resolve().parent)
    tables = data.get("services", {})
    if not isinstance(tables, dict) or not tables:
        raise _fail(path, "[api] needs a command (or describe the services as [services.NAME] tables)")
    workload, target, records = _workload(path, data.get("workload", {}))
    if target not in tables:
        raise _fail(
            path, f"[workload] target = {target!r} is not a service of this stack; services: {', '.join(tables)}"
        )
    where, services = {}, {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise _fail(path, f"[services.{name}] must be a table")
        table = dict(table)
        where[name] = "[api]" if table.pop(_LEGACY, False) else f"[services.{name}]"
        kind = table.get("kind", "command")
        if kind == "postgres":
            services[name] = _postgres(path, name, table, where[name])
        elif kind == "command":
            services[name] = _command(path, name, table, where[name], name == target)
        else:
            raise _fail(path, f'{where[name]} kind={kind!r}: use "command" (any program) or "postgres"')
    if services[target].kind != "command":
        raise _fail(
            path,
            f"[workload] target = {target!r} is a {services[target].kind}; the target is the HTTP "
            "service the load drives",
        )
    _check_graph(path, services, where)
    if not any(s.kind == "postgres" for s in services.values()):
        raise _fail(
            path, 'the stack has no service of kind = "postgres": the workload\'s records are found and counted by SQL'
        )
    return StackDefinition(path=path.resolve(), services=services, workload=workload, target=target, records=records)


def stack_definition(settings: Settings) -> StackDefinition:
    """The parsed stack file of ``settings`` (a relative path is taken from the suite's directory)."""
    path = Path(settings.stack_file)
    return load_stack_file(path if path.is_absolute() else REPO_ROOT / path)
