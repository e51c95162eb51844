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

Here: reading the file (``extends``, the single-service form) and gathering the
stack; each service table is checked in :mod:`support.stack.service_tables`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from support import REPO_ROOT
from support.core.config import Settings
from support.stack import workload as workload_module
from support.stack.definitions import ApiDefinition, ServiceDefinition, StackDefinition
from support.stack.operations import WorkloadError
from support.stack.service_tables import (
    LEGACY_DATABASE_KEYS,
    StackFileError,
    check_graph,
    command_service,
    fail,
    patroni_service,
    postgres_service,
)
from support.stack.workload import Workload

# StackFileError and LEGACY_DATABASE_KEYS live in support.stack.service_tables; re-exported here
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

_SECTIONS = ("extends", "services", "workload", "api", "database")
_LEGACY_API = ("command", "cwd", "env", "health_path", "stop_signal", "docker")
_LEGACY = "__legacy__"  # marks a service written as [api], so messages name the table the user wrote


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
            raise fail(path, "[api] must be a table")
        unknown = sorted(set(api) - set(_LEGACY_API))
        if unknown:
            raise fail(path, f"unknown [api] field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_LEGACY_API))}")
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
        raise fail(
            path, f"no such stack file; set stack_file to an existing file (the default is {DEFAULT_STACK_FILE})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise fail(path, f"not valid TOML: {error}") from None
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise fail(path, f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(_SECTIONS)}")
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
        raise fail(path, f"extends {parent!r} in a loop")
    base = _read(base_path, seen + (base_path,))
    # paths a file inherits stay relative to the file that wrote them
    _anchor(base, base_path.parent)
    return _merge(base, data)


def _workload(path: Path, table: Any) -> tuple[Workload, str, str]:
    """The workload, the service it targets and its records' noun."""
    if not isinstance(table, dict):
        raise fail(path, "[workload] must be a table")
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
        raise (StackFileError(message) if str(path) in message else fail(path, f"[workload] {message}")) from None
    if not (isinstance(records, str) and records.isalpha() and records.islower()):
        raise fail(
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
        raise fail(path, "[api] needs a command (or describe the services as [services.NAME] tables)")
    workload, target, records = _workload(path, data.get("workload", {}))
    if target not in tables:
        raise fail(
            path, f"[workload] target = {target!r} is not a service of this stack; services: {', '.join(tables)}"
        )
    where, services = {}, {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise fail(path, f"[services.{name}] must be a table")
        table = dict(table)
        where[name] = "[api]" if table.pop(_LEGACY, False) else f"[services.{name}]"
        kind = table.get("kind", "command")
        if kind == "postgres":
            services[name] = postgres_service(path, name, table, where[name])
        elif kind == "patroni":
            services[name] = patroni_service(path, name, table, where[name])
        elif kind == "command":
            services[name] = command_service(path, name, table, where[name], name == target)
        else:
            raise fail(path, f'{where[name]} kind={kind!r}: use "command", "postgres" or "patroni"')
    if services[target].kind != "command":
        raise fail(
            path,
            f"[workload] target = {target!r} is a {services[target].kind}; the target is the HTTP "
            "service the load drives",
        )
    check_graph(path, services, where)
    if not any(s.is_database for s in services.values()):
        raise fail(
            path, 'the stack has no service of kind = "postgres": the workload\'s records are found and counted by SQL'
        )
    return StackDefinition(path=path.resolve(), services=services, workload=workload, target=target, records=records)


def stack_definition(settings: Settings) -> StackDefinition:
    """The parsed stack file of ``settings`` (a relative path is taken from the suite's directory)."""
    path = Path(settings.stack_file)
    return load_stack_file(path if path.is_absolute() else REPO_ROOT / path)
