"""One typed settings object for a run, with clear errors at start.

Precedence, highest first: ``behave -D name=value``, the environment variable
``CHAOS_<NAME>`` (upper case), the ``[behave.userdata]`` section of
``behave.ini``, then the defaults written here.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError", "LOAD_LEVELS", "load_settings", "read_ini_userdata"]

LOAD_LEVELS = ("light", "steady", "heavy")
BACKENDS = ("process", "docker", "attached")
DOCKER_NETWORKS = ("host", "bridge")
ISOLATIONS = ("reuse", "restart-api", "restart-all")
LOAD_ENGINES = ("native", "locust")


class SettingsError(ValueError):
    """A setting is unknown or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything a run can be told, with units in the names or docs."""

    backend: str = "process"
    #: directory of PostgreSQL server binaries; empty = discover
    pg_bin: str = ""
    #: unprivileged user that runs PostgreSQL when the suite runs as root
    pg_user: str = "nobody"
    #: MiB of the tmpfs the process backend mounts for PostgreSQL's data directory (as root), the only
    #: filesystem "postgres runs out of disk space" fills; 0: the data directory stays in the run directory
    pg_disk_mb: int = 0
    #: start the stack's command services with libfaketime preloaded (at real time), so clock faults can move
    #: their wall clock live; off by default: under the preload a Python 3.11 ``time.sleep`` fails with EINVAL
    clock_faults: bool = False
    #: the stack file: how the ``api`` service is run and what workload drives it (bring your own service)
    stack_file: str = "stack/stack.toml"
    #: where run directories (data, logs, journal) go; empty = system temp dir
    work_root: str = ""
    keep_work_dir: bool = False
    #: seconds a service may take to become ready after a start or restart
    start_timeout: float = 30.0
    #: seconds the stack may take to report healthy before each scenario
    healthy_timeout: float = 20.0
    #: seconds a service has to be ready before a scenario; one that is not is restarted (support/run/isolation.py)
    ready_probe_timeout: float = 3.0
    #: the run stops after this many scenarios in a row whose stack could not be made ready
    not_ready_limit: int = 3
    #: before each scenario: reuse the services, restart the API, or restart the whole stack
    isolation: str = "reuse"
    #: runs of every scenario on the same stack (a ``@repeat.N`` tag sets one scenario's); the summary gives distributions
    repeat: int = 1
    #: requests per second of the named load levels
    load_light: float = 20.0
    load_steady: float = 50.0
    load_heavy: float = 150.0
    #: share of a load's requests that are writes (0..1); the rest read back earlier writes
    load_write_fraction: float = 0.5
    #: seconds before a load request is given up (recorded as ``info``)
    load_request_timeout: float = 5.0
    #: seconds a load runs before the step that starts it returns (the "before" phase)
    load_baseline: float = 1.0
    #: hard bound on a load's life, seconds: it stops by itself after this
    load_max_duration: float = 300.0
    #: what sends the load: the suite's own worker process, or Locust's master and workers (support/load/engine.py)
    load_engine: str = "native"
    #: locust engine: worker processes the suite starts on this machine
    locust_workers: int = 2
    #: locust engine: workers started by hand on other machines that the master waits for before the load starts
    locust_remote_workers: int = 0
    #: locust engine: host:port the master listens on for its workers (port 0: a free one); off loopback needs
    #: allow_remote_targets
    locust_master_bind: str = "127.0.0.1:0"
    #: recovery rule: this many consecutive successes ...
    recovery_min_successes: int = 5
    #: ... spanning at least this many seconds, with nothing failing after them
    recovery_min_span: float = 0.5
    #: seconds a Then step waits for the load to show recovery before judging
    settle_timeout: float = 30.0
    #: attached backend: a stack something else started (the suite only loads, reads and breaks the database)
    attached_api_url: str = ""
    attached_database_url: str = ""
    #: attached backend: empty the workload's tables before each scenario (off: it is someone else's data)
    attached_reset: bool = False
    #: inject faults into targets off 127.0.0.1 (off: refused with the reason)
    allow_remote_targets: bool = False
    #: docker backend: "host" (all on 127.0.0.1) or "bridge" (ports published on 127.0.0.1)
    docker_network: str = "host"
    #: docker backend: base image the Dockerfiles build FROM
    docker_base_image: str = "debian:bookworm-slim"
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SettingsError(f"backend={self.backend!r} is not a backend; use one of: {', '.join(BACKENDS)}")
        if self.docker_network not in DOCKER_NETWORKS:
            raise SettingsError(
                f"docker_network={self.docker_network!r} is not supported; use one of: {', '.join(DOCKER_NETWORKS)}"
            )
        if self.isolation not in ISOLATIONS:
            raise SettingsError(f"isolation={self.isolation!r} is not supported; use one of: {', '.join(ISOLATIONS)}")
        if self.load_engine not in LOAD_ENGINES:
            raise SettingsError(f"load_engine={self.load_engine!r} is unknown; use one of: {', '.join(LOAD_ENGINES)}")
        workers = (self.locust_workers, self.locust_remote_workers)
        if min(workers) < 0 or sum(workers) < 1:
            raise SettingsError(
                f"locust_workers={workers[0]} and locust_remote_workers={workers[1]} must be 0 or more,"
                " with at least one worker in all"
            )
        if self.load_engine == "locust":
            self._check_master_bind()
        if self.pg_disk_mb != 0 and self.pg_disk_mb < 64:
            raise SettingsError(
                f"pg_disk_mb={self.pg_disk_mb} is too small for a PostgreSQL cluster and its WAL; use 0 (off) or 64 or more"
            )
        if self.not_ready_limit < 1:
            raise SettingsError(f"not_ready_limit={self.not_ready_limit} must be 1 or more")
        if self.repeat < 1:
            raise SettingsError(f"repeat={self.repeat} must be 1 or more (the runs of each scenario)")
        for name in (
            "start_timeout",
            "healthy_timeout",
            "ready_probe_timeout",
            "load_light",
            "load_steady",
            "load_heavy",
            "load_request_timeout",
            "load_max_duration",
            "settle_timeout",
            "load_baseline",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name}={getattr(self, name)} must be greater than 0")
        if not 0.0 <= self.load_write_fraction <= 1.0:
            raise SettingsError(f"load_write_fraction={self.load_write_fraction} must be between 0 and 1")
        if self.recovery_min_successes < 1 or self.recovery_min_span < 0:
            raise SettingsError("recovery_min_successes must be >= 1 and recovery_min_span >= 0")

    def _check_master_bind(self) -> None:
        """``locust_master_bind`` is host:port, on loopback unless ``allow_remote_targets``."""
        from support.core.targets import TargetNotAllowed, check_target

        bind = self.locust_master_bind
        host, sep, port = bind.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise SettingsError(
                f"locust_master_bind={bind!r} must be host:port, e.g. 127.0.0.1:5557 (port 0: a free one)"
            )
        if not self.allow_remote_targets:
            try:
                check_target(host, False)
            except TargetNotAllowed as error:
                raise SettingsError(
                    f"locust_master_bind={bind!r} is not on loopback ({error}); set allow_remote_targets=true"
                    " to let workers on other machines connect"
                ) from None

    def load_rate(self, level: str) -> float:
        """Requests per second of a named load level (``light``, ``steady``, ``heavy``)."""
        if level not in LOAD_LEVELS:
            raise SettingsError(f"unknown load level {level!r}; use one of: {', '.join(LOAD_LEVELS)}")
        return float(getattr(self, f"load_{level}"))

    @property
    def work_root_path(self) -> Path:
        """The directory under which each run makes its own directory."""
        import tempfile

        return Path(self.work_root) if self.work_root else Path(tempfile.gettempdir()) / "chaos-suite"


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "extra"}


def _convert(name: str, raw: Any, source: str) -> Any:
    kind: type[Any] = type(_FIELDS[name].default)
    text = str(raw).strip()
    if kind is str:
        return text
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return kind(text)
    except ValueError:
        expected = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise SettingsError(f"{name}={text!r} (from {source}) is not {expected}") from None


def read_ini_userdata(path: Path) -> dict[str, str]:
    """The ``[behave.userdata]`` section of a behave.ini file, or {} if absent."""
    parser = configparser.ConfigParser()
    # keep names as written; replacing the method is configparser's documented way, which typeshed types as a method
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    if path.is_file():
        parser.read(path)
    return dict(parser["behave.userdata"]) if parser.has_section("behave.userdata") else {}


def load_settings(
    userdata: Mapping[str, Any], ini: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from behave's userdata (ini merged with ``-D``), the ini alone, and env.

    A userdata value that differs from the ini's (or is absent from it) came
    from ``-D`` and wins over the environment; otherwise ``CHAOS_<NAME>`` wins
    over the ini. Unknown names are refused with the list of valid ones.
    """
    ini = dict(ini or {})
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for name, raw in userdata.items():
        if name not in _FIELDS:
            if name.startswith("x_"):  # user extensions pass through untouched
                extra[name] = str(raw)
                continue
            raise SettingsError(f"unknown setting {name!r}; valid settings: {', '.join(sorted(_FIELDS))}")
    for name in _FIELDS:
        env_name = f"CHAOS_{name.upper()}"
        from_cli = name in userdata and (name not in ini or str(userdata[name]) != str(ini[name]))
        if from_cli:
            values[name] = _convert(name, userdata[name], f"-D {name}")
        elif env_name in environ:
            values[name] = _convert(name, environ[env_name], f"environment {env_name}")
        elif name in userdata:
            values[name] = _convert(name, userdata[name], "behave.ini")
    return replace(Settings(), **values, extra=extra) if values or extra else Settings()
