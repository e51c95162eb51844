"""The stack file: which service the suite runs as ``api``, and the workload it drives through it.

Bring your own service by writing a copy of ``stack/stack.toml`` and pointing
the ``stack_file`` setting at it: no Python to edit. Placeholders in the
command and environment are filled in at start:

``{python}`` the suite's interpreter, ``{host}``/``{port}`` where the service must
listen, ``{repo}`` the suite's directory, ``{stack_dir}`` the stack file's directory,
``{database_url}`` (``postgresql://user:password@host:port/db``),
``{sqlalchemy_url}`` (``postgresql+psycopg2://...``), ``{db_host}``, ``{db_port}``,
``{db_name}``, ``{db_user}``, ``{db_password}``.
"""
from __future__ import annotations

import signal
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from support import REPO_ROOT
from support.core.config import Settings
from support.stack.workload import Workload, WorkloadError, render

__all__ = ["ApiDefinition", "StackDefinition", "StackFileError", "load_stack_file", "stack_definition", "DEFAULT_STACK_FILE"]

DEFAULT_STACK_FILE = REPO_ROOT / "stack" / "stack.toml"


class StackFileError(ValueError):
    """The stack file is missing or malformed; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class ApiDefinition:
    """How the backends run the service under test."""

    command: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    stop_signal: int = signal.SIGTERM
    #: docker backend: an image to run instead of the reference API's (which has Python and its requirements)
    docker_image: str = ""
    #: docker backend: the command in the container, if not ``command``
    docker_command: tuple[str, ...] = ()
    #: docker backend: a build context to build the service's own image from (with ``docker_dockerfile`` in it)
    docker_build: Path | None = None
    docker_dockerfile: str = "Dockerfile"

    def argv(self, values: dict[str, str]) -> list[str]:
        """The command with its placeholders filled."""
        return [render(part, values) for part in self.command]

    def environment(self, values: dict[str, str]) -> dict[str, str]:
        """The extra environment with its placeholders filled."""
        return {k: render(v, values) for k, v in self.env.items()}


@dataclass(frozen=True)
class StackDefinition:
    """A parsed stack file."""

    path: Path
    api: ApiDefinition
    database_name: str = "users"
    database_user: str = "app"
    workload: Workload = field(default_factory=Workload)


def _fail(path: Path, message: str) -> StackFileError:
    return StackFileError(f"{path}: {message}")


def _strings(path: Path, where: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(path, f"{where} must be a list of strings (or one string), got {value!r}")


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _read(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, Path]:
    """The file's tables, merged over those of the file it ``extends``; relative paths kept per file."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(path, "no such stack file; set stack_file to an existing file (the default is "
                          f"{DEFAULT_STACK_FILE})") from None
    except tomllib.TOMLDecodeError as error:
        raise _fail(path, f"not valid TOML: {error}") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data, path.parent
    base_path = (path.parent / parent).resolve()
    if base_path in seen:
        raise _fail(path, f"extends {parent!r} in a loop")
    base, base_dir = _read(base_path, seen + (base_path,))
    api = data.get("api", {})
    # paths a file inherits stay relative to the file that wrote them
    if "api" in base and "cwd" not in api:
        base["api"]["cwd"] = str((base_dir / base["api"].get("cwd", ".")).resolve())
    return _merge(base, data), path.parent


def load_stack_file(path: Path) -> StackDefinition:
    """Read and validate a stack file; every problem is one line naming the field.

    ``extends = "other.toml"`` at the top starts from another stack file and
    overrides what this one sets (tables are merged key by key).
    """
    path = Path(path)
    data, _ = _read(path.resolve())
    unknown = sorted(set(data) - {"api", "database", "workload"})
    if unknown:
        raise _fail(path, f"unknown section(s) {', '.join(unknown)}; valid: extends, api, database, workload")
    api = data.get("api")
    if not isinstance(api, dict) or "command" not in api:
        raise _fail(path, "[api] needs a command, e.g. command = [\"{python}\", \"-m\", \"uvicorn\", \"app:app\", "
                          "\"--host\", \"{host}\", \"--port\", \"{port}\"]")
    allowed = {"command", "cwd", "env", "health_path", "stop_signal", "docker"}
    if set(api) - allowed:
        raise _fail(path, f"unknown [api] field(s) {', '.join(sorted(set(api) - allowed))}; "
                          f"valid: {', '.join(sorted(allowed))}")
    base = path.parent
    command = _strings(path, "[api] command", api["command"])
    if not any("{port}" in part for part in command):
        raise _fail(path, "[api] command must use {port}: the suite chooses the port the service listens on")
    env = api.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise _fail(path, "[api] env must be a table of strings")
    try:
        stop_signal = signal.Signals[api.get("stop_signal", "SIGTERM")]
    except KeyError:
        raise _fail(path, f"[api] stop_signal={api.get('stop_signal')!r} is not a signal name like SIGTERM") from None
    docker = api.get("docker", {})
    if not isinstance(docker, dict) or set(docker) - {"image", "build", "dockerfile", "command"}:
        raise _fail(path, "[api.docker] takes image (an image to run instead of the reference API's) or build (a "
                          "folder with a Dockerfile to build it from) and dockerfile, and command")
    if "image" in docker and "build" in docker:
        raise _fail(path, "[api.docker] takes image or build, not both")
    if "dockerfile" in docker and "build" not in docker:
        raise _fail(path, "[api.docker] dockerfile names a file in the build folder: add build = \"folder\"")
    build = None
    dockerfile = str(docker.get("dockerfile", "Dockerfile"))
    if "build" in docker:
        build = (base / str(docker["build"])).resolve()
        if not (build / dockerfile).is_file():
            raise _fail(path, f"[api.docker] build = {docker['build']!r}: there is no {build / dockerfile}")
    health_path = api.get("health_path", "/health")
    if not isinstance(health_path, str) or not health_path.startswith("/"):
        raise _fail(path, f"[api] health_path={health_path!r} must start with /")
    definition = ApiDefinition(
        command=command, cwd=(base / api.get("cwd", ".")).resolve(), env=dict(env),
        health_path=health_path, stop_signal=stop_signal,
        docker_image=str(docker.get("image", "")),
        docker_command=_strings(path, "[api.docker] command", docker["command"]) if "command" in docker else (),
        docker_build=build, docker_dockerfile=dockerfile)
    database = data.get("database", {})
    try:
        workload = Workload.from_dict(data.get("workload", {}))
    except (WorkloadError, TypeError) as error:
        raise _fail(path, f"[workload] {error}") from None
    return StackDefinition(path=path.resolve(), api=definition, database_name=database.get("name", "users"),
                           database_user=database.get("user", "app"), workload=workload)


def stack_definition(settings: Settings) -> StackDefinition:
    """The parsed stack file of ``settings`` (a relative path is taken from the suite's directory)."""
    path = Path(settings.stack_file)
    return load_stack_file(path if path.is_absolute() else REPO_ROOT / path)
