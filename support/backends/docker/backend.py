"""The Docker backend: PostgreSQL and the API as containers on a real Docker engine (Docker SDK).

One container per service, built from ``stack/docker/*.Dockerfile`` and
labelled with the run (see :mod:`support.backends.docker.labels`); PostgreSQL's data in
a named volume of the run. With ``docker_network=host`` (the default, and what
this repository's tests and CI use) the containers share the host's network
and listen on 127.0.0.1 on free ports chosen at start; with ``bridge`` they sit
on a network of the run and their ports are published on 127.0.0.1 only.
Either way the ports stay the same across container restarts.

Both containers run with Docker's ``unless-stopped`` restart policy and tini
as PID 1. A kill is a crash as far as Docker can tell: the signal is sent from
inside the container to every process but tini (``kill -1``), tini exits with
the service, and the engine restarts the container. (``docker kill`` would
not do: the engine treats it as a manual stop and cancels the policy.)
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support import REPO_ROOT
from support.core.config import Settings
from support.backends.process.backend import connection_values, service_values
from support.stack.stack_file import ApiDefinition, StackDefinition, StackFileError, stack_definition
from support.stack.workload import render
from support.backends.docker.images import IMAGE_SPECS, BuiltImage, ensure_image, service_image_spec
from support.backends.docker.labels import KEEP_LABEL, SERVICE_LABEL, remove_leftovers, run_labels
from support.backends.reaper import describe_removed
from support.proxy.link import start_link
from support.core.ports import LOOPBACK
from support.stack.readiness import check_listener, database_answers, http_answers
from support.stack.services import Address, ServiceError
from support.stack.database import connect
from support.stack.stack import Cleanup, Stack
from support.core.waiting import Deadline, WaitTimeout, wait_until

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = ["ContainerSpec", "ContainerService", "PostgresContainer", "ApiContainer", "docker_client",
           "postgres_spec", "api_spec", "start_docker_stack", "PG_DATA_MOUNT", "REPO_ROOT"]

PG_DATA_MOUNT = "/var/lib/postgresql/data"
SUITE_MOUNT = "/suite"
_SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_UNLESS_STOPPED = {"Name": "unless-stopped", "MaximumRetryCount": 0}
# the port each service listens on inside its own network namespace on a bridge network
_BRIDGE_PORTS = {"postgres": 5432, "api": 8000}
_FIX_DAEMON = ("start it (`sudo systemctl start docker`, or `sudo bash .ci/docker-setup.sh`, which installs and "
               "starts one), point DOCKER_HOST at a running engine, or run on the process backend "
               "(-D backend=process)")


def docker_client(timeout: float = 120.0) -> "DockerClient":
    """A Docker SDK client that has answered a ping; one clear :class:`ServiceError` when there is none.

    ``timeout`` is the HTTP timeout of each API call, in seconds.
    """
    try:
        import docker
        import docker.errors
    except ImportError:
        raise ServiceError("the docker backend needs the Docker SDK: pip install 'docker>=7'") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as error:
        reason = " ".join(str(error).split())
        if "Permission denied" in reason:
            raise ServiceError(f"no permission to use the Docker daemon at {where}: add your user to the "
                               "`docker` group (then log in again) or run as root") from None
        raise ServiceError(f"cannot reach the Docker daemon at {where} ({reason[:160]}): {_FIX_DAEMON}") from None
    return client


@dataclass
class ContainerSpec:
    """How to create one service's container: the keyword arguments of ``containers.create``, by meaning."""

    name: str
    service: str
    image: str
    command: list[str]
    environment: dict[str, str]
    labels: dict[str, str]
    network_mode: str | None = "host"
    network: str | None = None
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    working_dir: str | None = None

    def create_kwargs(self) -> dict[str, Any]:
        """The arguments for ``client.containers.create``."""
        kwargs: dict[str, Any] = dict(
            image=self.image, command=self.command, name=self.name, environment=self.environment,
            labels={**self.labels, SERVICE_LABEL: self.service}, detach=True,
            restart_policy=dict(_UNLESS_STOPPED), volumes=self.volumes,
            # json-file, whatever the engine's default: the logs API must be able to read it back
            log_config={"Type": "json-file", "Config": {"max-size": "50m", "max-file": "2"}})
        if self.working_dir:
            kwargs["working_dir"] = self.working_dir
        if self.network is not None:
            kwargs.update(network=self.network, ports=self.ports, hostname=self.service)
        else:
            kwargs.update(network_mode=self.network_mode)
        return kwargs


def postgres_spec(run_id: str, image: str, labels: dict[str, str], volume: str, port: int, network: str | None,
                  admin_password: str, app_password: str, database: str = "users", role: str = "app") -> ContainerSpec:
    """The PostgreSQL container: listens on 127.0.0.1:``port`` (host network) or publishes it there (bridge)."""
    inner_port = port if network is None else _BRIDGE_PORTS["postgres"]
    listen = LOOPBACK if network is None else "*"
    command = ["postgres", "-c", f"listen_addresses={listen}", "-p", str(inner_port),
               "-c", "max_connections=100", "-c", "shared_buffers=32MB", "-c", "log_line_prefix=%m [%p] %a "]
    return ContainerSpec(
        name=f"chaos-suite-{run_id}-postgres", service="postgres", image=image, command=command,
        environment={"POSTGRES_PASSWORD": admin_password, "APP_USER": role, "APP_PASSWORD": app_password,
                     "APP_DB": database},
        labels=labels, network=network,
        ports={} if network is None else {f"{inner_port}/tcp": (LOOPBACK, port)},
        volumes={volume: {"bind": PG_DATA_MOUNT, "mode": "rw"}})


def api_spec(run_id: str, image: str, labels: dict[str, str], port: int, network: str | None,
             api: ApiDefinition, values: dict[str, str]) -> ContainerSpec:
    """The service under test in a container: 127.0.0.1:``port`` (host network) or published there (bridge).

    It runs the stack file's command (``[api.docker] command``, else ``[api] command``)
    in the API image (built from ``[api.docker] build``, or ``[api.docker] image``, else the
    reference API's: Python with its requirements), with the suite's repository mounted
    read-only at /suite: ``{python}`` is ``python``, ``{repo}`` is /suite and ``{stack_dir}``
    the stack file's folder under it. It starts in ``[api] cwd`` under /suite, except in an
    image built from the service's own Dockerfile, whose ``WORKDIR`` holds its code (that
    service, and its stack file, may then live outside the repository).
    """
    inner_port = port if network is None else _BRIDGE_PORTS["api"]
    values = {**values, "host": LOOPBACK if network is None else "0.0.0.0", "port": str(inner_port)}
    command = [render(part, values) for part in (api.docker_command or api.command)]
    environment = {"APP_NAME": "users-api", **api.environment(values)}
    return ContainerSpec(
        name=f"chaos-suite-{run_id}-api", service="api", image=image, command=command, environment=environment,
        labels=labels, network=network, ports={} if network is None else {f"{inner_port}/tcp": (LOOPBACK, port)},
        volumes={str(REPO_ROOT): {"bind": SUITE_MOUNT, "mode": "ro"}},
        working_dir=None if api.docker_build is not None else _in_mount(api.cwd))


def _in_mount(path: Path) -> str:
    """Where a path of the suite's repository is inside the API container."""
    try:
        return str(Path(SUITE_MOUNT) / path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        raise ServiceError(f"the docker backend mounts only the suite's repository ({REPO_ROOT}); {path} is "
                           "outside it: move your service's files under the repository") from None


def _parse_stamp(stamp: str) -> float | None:
    # Docker's RFC 3339 stamps carry nanoseconds; datetime takes microseconds
    head, _, rest = stamp.partition(".")
    fraction = rest.rstrip("Z")[:6]
    try:
        return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00").timestamp()
    except ValueError:
        return None


class ContainerService:
    """One service as one container, with the :class:`support.stack.services.Service` operations."""

    def __init__(self, client: "DockerClient", spec: ContainerSpec, port: int, container: Any = None) -> None:
        self.name = spec.service
        self.spec = spec
        self._client = client
        self._port = port
        # a container something else made (the compose backend: Compose did); else made from ``spec`` at start
        self._container = container
        self._closed = False

    # -- state ---------------------------------------------------------------
    @property
    def address(self) -> Address:
        return Address(LOOPBACK, self._port)

    @property
    def container_name(self) -> str:
        return self.spec.name

    def status(self) -> str:
        """The container's state as Docker says it (``running``, ``paused``, ``restarting``, ``exited``, ...)."""
        container = self._inspect()
        return "missing" if container is None else container.status

    def state(self) -> dict[str, Any]:
        """The container's ``State`` as ``docker inspect`` shows it ({} when there is no container)."""
        container = self._inspect()
        return {} if container is None else dict(container.attrs.get("State", {}),
                                                  RestartCount=container.attrs.get("RestartCount", 0))

    @property
    def restarts(self) -> int:
        """How many times the engine's restart policy brought the container back."""
        return int(self.state().get("RestartCount", 0))

    def _inspect(self):
        import docker.errors

        if self._container is None:
            return None
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return None
        return self._container

    # -- control ---------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Create the container if there is none, start it if it is not running, then wait until ready."""
        import docker.errors

        if self._closed:
            raise ServiceError(f"{self.name} is closed")
        deadline = Deadline(timeout)
        container = self._inspect()
        if container is None:
            try:
                self._container = container = self._client.containers.create(**self.spec.create_kwargs())
            except docker.errors.APIError as error:
                raise ServiceError(f"could not create the {self.name} container: {error.explanation or error}") from None
        if container.status in ("created", "exited", "dead"):
            try:
                container.start()
            except docker.errors.APIError as error:
                # the restart policy may have started it meanwhile; only a container still down is a failure
                if self.status() not in ("running", "restarting"):
                    raise ServiceError(f"could not start the {self.name} container {self.spec.name}: "
                                       f"{error.explanation or error}", logs=self._tail()) from None
        # "running", "restarting" (the policy at work) and anything just started: wait in domain terms
        self.wait_ready(deadline.remaining())

    def stop(self, timeout: float = 10.0) -> None:
        """``docker stop``: the image's stop signal, SIGKILL after ``timeout`` s; stays down until :meth:`start`."""
        container = self._inspect()
        if container is None or container.status in ("created", "exited", "dead"):
            return
        # the engine counts whole seconds; rounding up never cuts a graceful stop short
        container.stop(timeout=max(1, math.ceil(timeout)))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of the container at once (not tini); the restart policy applies.

        Returns once the signal is sent, without waiting for the exit.
        """
        import docker.errors

        container = self._inspect()
        if container is None or container.status not in ("running", "paused"):
            return
        if container.status == "paused":
            container.unpause()  # nothing can be executed in a frozen container
        name = signal.Signals(sig).name.removeprefix("SIG")
        try:
            result = container.exec_run(["bash", "-c", f"kill -s {name} -1"], stdout=True, stderr=True)
        except docker.errors.APIError as error:
            if self.status() in ("running", "paused"):
                raise ServiceError(f"could not signal {self.name}: {error.explanation or error}") from None
            return  # it went down by itself meanwhile: the signal has nothing left to do
        # 128 + n: the exec itself died with the container (a signal that ends the service ends the exec too)
        if result.exit_code not in (0, None) and result.exit_code < 128:
            raise ServiceError(f"could not signal {self.name}: {result.output.decode(errors='replace').strip()}")

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop (PostgreSQL: the shutdown ``mode``; others: :meth:`stop`) and start; return once ready."""
        deadline = Deadline(timeout)
        sig = self._shutdown_signal(mode)
        container = self._inspect()
        if container is not None and container.status == "running" and sig in (None, self._stop_signal(container)):
            # the stop signal is what `docker restart` sends: one call, the shortest outage (here ≈ 0.3 s to
            # running again, against ≈ 0.5 s for update + signal + wait + start); SIGKILL after the deadline
            container.restart(timeout=max(1, math.ceil(deadline.remaining())))
        elif sig is None:
            self.stop(deadline.remaining())
        else:
            self._shutdown(sig, deadline)
        self.start(deadline.remaining())

    def _shutdown_signal(self, mode: str) -> int | None:
        return None

    @staticmethod
    def _stop_signal(container) -> int:
        name = container.attrs.get("Config", {}).get("StopSignal") or "SIGTERM"
        try:
            return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
        except KeyError:
            return int(name) if name.isdigit() else int(signal.SIGTERM)

    def _shutdown(self, sig: int, deadline: Deadline) -> None:
        """Ask the main process to exit with ``sig`` (through tini) and wait; SIGKILL when the deadline passes."""
        container = self._inspect()
        if container is None or container.status not in ("running", "paused", "restarting"):
            return
        # the engine would restart a container that exits on a signal other than its stop signal
        policy = dict(container.attrs.get("HostConfig", {}).get("RestartPolicy") or _UNLESS_STOPPED)
        container.update(restart_policy={"Name": "no", "MaximumRetryCount": 0})
        try:
            if container.status == "paused":
                container.unpause()  # a frozen server could not act on the signal
            if container.status != "restarting":
                container.kill(signal=int(sig))
            if not self._wait_exit(container, deadline.remaining()):
                container.kill()
                self._wait_exit(container, 10.0)
        finally:
            container.update(restart_policy=policy)  # its own again (a compose file's may differ)

    @staticmethod
    def _wait_exit(container, timeout: float) -> bool:
        import requests

        try:
            # the engine answers when the container stops: no polling
            container.wait(timeout=max(0.1, timeout), condition="not-running")
            return True
        except requests.exceptions.RequestException:
            return False

    def pause(self) -> None:
        """``docker pause``: freeze every process of the container (cgroup freezer)."""
        container = self._inspect()
        if container is not None and container.status == "running":
            container.pause()

    def resume(self) -> None:
        """``docker unpause``; a no-op when not paused."""
        container = self._inspect()
        if container is not None and container.status == "paused":
            container.unpause()

    # -- readiness and evidence ------------------------------------------------
    def is_ready(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_listener(self) -> None:
        """On the host network, the port must be held by the container's own processes (not an impostor's)."""
        if self.spec.network is None:
            check_listener(self._port, self.state().get("Pid") or None, self.name)

    def wait_ready(self, timeout: float) -> None:
        """Return once :meth:`is_ready`; :class:`ServiceError` with the container's state and logs after ``timeout`` s."""
        try:
            wait_until(self.is_ready, timeout, f"{self.name} becoming ready")
        except WaitTimeout as error:
            state = self.state()
            described = (f"container {self.spec.name} is {state.get('Status', 'missing')}"
                         f" (exit code {state.get('ExitCode')}, restarted {state.get('RestartCount', 0)} times"
                         f"{', error: ' + state['Error'] if state.get('Error') else ''})")
            raise ServiceError(f"{error}; {described}; see `docker logs {self.spec.name}`",
                               logs=self._tail()) from None

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def logs(self, since: float | None = None) -> str:
        """The container's output (all its restarts), each line stamped with its epoch second, from ``since`` on."""
        import docker.errors

        container = self._container
        if container is None:
            return ""
        try:
            raw = container.logs(stdout=True, stderr=True, timestamps=True,
                                 since=since if since else None, tail=20000 if since is None else "all")
        except docker.errors.APIError:
            return ""  # removed already
        out = []
        for line in raw.decode("utf-8", "replace").splitlines(keepends=True):
            stamp, _, text = line.partition(" ")
            seconds = _parse_stamp(stamp)
            out.append(f"{seconds:.3f} {text}" if seconds is not None else line)
        return "".join(out)

    def close(self) -> None:
        """Stop the container gracefully (so a kept volume holds a clean shutdown) and remove it; idempotent."""
        import docker.errors

        self._closed = True
        container = self._inspect()
        if container is None:
            return
        try:
            if container.status in ("running", "paused", "restarting"):
                container.stop(timeout=5)
        except docker.errors.APIError:
            pass  # removal below kills whatever is left
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


class PostgresContainer(ContainerService):
    """PostgreSQL in a container; restart modes map to ``smart``/``fast``/``immediate`` shutdowns."""

    def __init__(self, client: "DockerClient", spec: ContainerSpec, port: int, admin_password: str,
                 container: Any = None) -> None:
        super().__init__(client, spec, port, container)
        self.password = admin_password
        self.database = spec.environment.get("APP_DB", "postgres")

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A libpq DSN for this server, on 127.0.0.1."""
        return f"host={LOOPBACK} port={self._port} dbname={dbname} user={user} password={password or self.password}"

    def _shutdown_signal(self, mode: str) -> int | None:
        try:
            return _SHUTDOWN_SIGNALS[mode]
        except KeyError:
            raise ValueError(f"unknown restart mode {mode!r}; use one of: {', '.join(_SHUTDOWN_SIGNALS)}") from None

    def is_ready(self) -> bool:
        self._check_listener()
        return database_answers(self.dsn(self.database))


class ApiContainer(ContainerService):
    """The API under uvicorn in a container; ready when ``GET /health`` answers at all."""

    def __init__(self, client: "DockerClient", spec: ContainerSpec, port: int, health_path: str = "/health",
                 container: Any = None) -> None:
        super().__init__(client, spec, port, container)
        self.url = f"http://{LOOPBACK}:{port}"
        self.health_url = self.url + health_path

    def is_ready(self) -> bool:
        # the API is up when it answers; whether its database is reachable is the health check's business
        self._check_listener()
        return http_answers(self.health_url)


def start_docker_stack(settings: Settings, run_dir: Path) -> Stack:
    """Start every service of the stack file as containers of run ``run_dir.name``, in dependency order, with a
    proxied link per ``uses`` edge (host network); return the ready stack.

    First removes what dead runs left on the engine, then builds the images
    when their inputs changed. Each thing's removal is pushed as it is made: on
    any failure what this call made is removed, newest first (the data volume
    kept with ``keep_work_dir``), before the error propagates.
    """
    definition = stack_definition(settings)
    check_docker_shape(definition, settings.docker_network)
    extras = [name for name in definition.start_order if name not in (definition.target,
                                                                         definition.database_service.name)]
    db, role = definition.database_name, definition.database_user
    pg_name, api_name = definition.database_service.name, definition.target
    client = docker_client()
    timings: dict[str, float] = {}
    started = time.monotonic()
    images: dict[str, BuiltImage] = {}
    keep = settings.keep_work_dir
    with Cleanup() as made:
        made.callback(client.close)  # pushed first, so it goes last
        swept = remove_leftovers(client)
        _report_leftovers(swept)
        timings["leftovers_s"] = time.monotonic() - started
        base = settings.docker_base_image
        images["postgres"] = ensure_image(client, IMAGE_SPECS["postgres"], base, run_dir / "docker-build-postgres.log")
        own = definition.api.docker_build
        if own is not None:  # the service's own Dockerfile
            images["api"] = ensure_image(client, service_image_spec(own, definition.api.docker_dockerfile), base,
                                         run_dir / "docker-build-api.log", root=own, base_required=False)
        elif not definition.api.docker_image:  # else the user's image: nothing to build
            images["api"] = ensure_image(client, IMAGE_SPECS["api"], base, run_dir / "docker-build-api.log")
        timings.update({f"image_{name}_s": image.seconds for name, image in images.items()})
        run_id = run_dir.name
        labels = run_labels(run_id)
        admin_password = secrets.token_urlsafe(18)
        app_password = secrets.token_urlsafe(18)
        pg_port, api_port, *extra_ports = free_ports(2 + len(extras))
        network = None
        if settings.docker_network == "bridge":
            created = client.networks.create(f"chaos-suite-{run_id}", driver="bridge", labels=labels)
            made.callback(_remove, created)
            network = created.name
        volume = client.volumes.create(f"chaos-suite-{run_id}-pgdata",
                                       labels={**labels, KEEP_LABEL: str(keep).lower()})
        if not keep:
            made.callback(_remove, volume, force=True)
        postgres = PostgresContainer(
            client, postgres_spec(run_id, images["postgres"].id, labels, volume.name, pg_port, network,
                                  admin_password, app_password, db, role), pg_port, admin_password)
        made.callback(postgres.close)
        links = {}
        if network is None:
            # as in the process backend, the API reaches PostgreSQL through the suite's fault proxy (a process on
            # 127.0.0.1, which host-networked containers share); the suite's own SQL goes direct
            ports = {pg_name: pg_port, api_name: api_port, **dict(zip(extras, extra_ports, strict=True))}
            for client_name, server in definition.links:
                links[(client_name, server)] = link = start_link(run_dir, server, Address(LOOPBACK, ports[server]))
                made.callback(link.close)
            db_host, db_port = LOOPBACK, links[(api_name, pg_name)].address.port
        else:
            # on a bridge network the API cannot reach the host's loopback: no link faults there
            db_host, db_port = postgres.spec.name, _BRIDGE_PORTS["postgres"]
        values = {**connection_values(db_host, db_port, db, role, app_password, pg_name), "python": "python",
                  "repo": SUITE_MOUNT}
        if definition.api.docker_build is None:  # a service built into its own image may live anywhere
            values["stack_dir"] = _in_mount(definition.path.parent)
        api_image = definition.api.docker_image or images["api"].id
        link_ports = {edge: link.address.port for edge, link in links.items()}
        if network is None:  # every placeholder of the services the target uses, through their links
            values.update(docker_values(definition, definition.api,
                                        service_values(definition, api_name, link_ports, {role: app_password})))
        api = ApiContainer(client, api_spec(run_id, api_image, labels, api_port, network, definition.api,
                                            values), api_port, definition.api.health_path)
        made.callback(api.close)
        services: dict[str, Any] = {pg_name: postgres, api_name: api}
        for name, port in zip(extras, extra_ports, strict=True):
            service = definition.services[name]
            host_values = service_values(definition, name, link_ports, {role: app_password})
            ready_dsn = postgres.dsn(db, role, app_password) if pg_name in service.uses else ""
            services[name] = CommandContainer(
                client, run_id, labels, command_image(client, service, settings.docker_base_image, run_dir, images),
                port, service, docker_values(definition, service, host_values), host_values, ready_dsn)
            made.callback(services[name].close)
        for name in definition.start_order:
            step = time.monotonic()
            services[name].start(settings.start_timeout)
            timings[f"{name}_start_s"] = time.monotonic() - step
        versions = _versions(client, postgres, images, settings)
        timings["total_s"] = time.monotonic() - started
        (run_dir / "docker.json").write_text(json.dumps({
            "network": settings.docker_network, "images": {k: v.tag for k, v in images.items()},
            "built": [k for k, v in images.items() if v.built],
            "containers": {name: service.container_name for name, service in services.items()},
            "volume": volume.name, "leftovers_removed": swept.containers + swept.volumes + swept.networks,
            "timings": {k: round(v, 3) for k, v in timings.items()}}, indent=2))
        stack = Stack(backend="docker", services=services, api_url=api.url, links=links,
                      workload=definition.workload, health_path=definition.api.health_path,
                      start_order=definition.start_order, target=api_name,
                      admin_dsn=postgres.dsn(db), app_dsn=postgres.dsn(db, role, app_password),
                      versions=versions, secrets=(admin_password, app_password), cleanup=made.pop_all())
    return stack


# below the classes they build on (commands imports ContainerService and api_spec from here)
from support.backends.docker.commands import CommandContainer, command_image, docker_values, free_ports  # noqa: E402


def check_docker_shape(definition: StackDefinition, network: str = "host") -> None:
    """Refuse, in one line, a stack the Docker backend cannot run yet: one postgres with one database, command
    services beside the target only on the host network (where the fault proxy can stand on each link), and no
    ``before_start`` (those run on the process backend)."""
    wanted = {definition.target, definition.database_service.name}
    extra = [name for name in definition.services if name not in wanted]
    postgres = [s for s in definition.services.values() if s.kind == "postgres"]
    fix = "run this stack with -D backend=process"
    if len(postgres) > 1 or len(postgres[0].databases) > 1:
        raise StackFileError(f"{definition.path}: [services.{postgres[-1].name}] the Docker backend runs one "
                             f"postgres with one database; {fix}")
    if extra and network != "host":
        raise StackFileError(f"{definition.path}: [services.{extra[0]}] the Docker backend runs the workload's "
                             f"target and one postgres only ({', '.join(sorted(wanted))}) on docker_network="
                             f"{network}; use docker_network=host, or {fix}")
    for service in definition.services.values():
        if service.before_start:
            raise StackFileError(f"{definition.path}: [services.{service.name}] before_start is not run by the "
                                 f"Docker backend yet; bake it into the image's command, or {fix}")


def _report_leftovers(swept) -> None:
    """One line naming what dead runs left on the engine and was removed, and what could not be."""
    if swept.containers or swept.volumes or swept.networks:
        removed = describe_removed({"container": swept.containers, "volume": swept.volumes, "network": swept.networks})
        print(f"chaos-suite: removed what runs that were killed left on the Docker engine: {removed}", file=sys.stderr)
    for name, reason in swept.failed.items():
        print(f"chaos-suite: could not remove {name}, left by a run that was killed: {reason}", file=sys.stderr)


def _remove(thing, **kwargs: Any) -> None:
    """Remove one of the run's networks or volumes; one already gone is fine."""
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        thing.remove(**kwargs)


def _versions(client: "DockerClient", postgres: PostgresContainer, images: dict[str, BuiltImage],
              settings: Settings) -> dict[str, str]:
    with connect(postgres.dsn(), 5.0) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        server = cur.fetchone()[0]
    return {"postgres": server, "docker_engine": client.version().get("Version", "unknown"),
            "postgres_image": images["postgres"].tag,
            "api_image": images["api"].tag if "api" in images else stack_definition(settings).api.docker_image,
            "docker_network": settings.docker_network}
