"""Start a user's Compose project for one run, with the real Docker Compose CLI, and hand it over as a Stack.

Per run: a project name of its own (``chaos-suite-<run>``); an override file the
suite writes next to the run (labels of the run on every container and named
volume, so a killed run's project is removed by the next run's sweep and by the
reaper, see :mod:`support.backends.docker.labels`; and each linked variable
pointed at the fault proxy's listener for that edge, an HTTP link when the used service
says ``protocol: http`` in x-chaos); ``up --wait`` (the compose
file's own health checks), then the suite's own readiness check per service;
faults act on the project's containers through the Docker SDK (found by the
``com.docker.compose.project`` label) with the Docker backend's
:class:`~support.backends.docker.containers.ContainerService`; at the end the logs
of each service are saved in the run directory and ``down -v`` removes the rest.
With ``pg_disk_mb`` the database service's data directory is the Docker backend's
host tmpfs (:func:`~support.backends.docker.disk.mount_data_disk`), bound by the
override file and unmounted after ``down -v`` (after a SIGKILL, by the reaper or
the next run's sweep of dead run directories, as on Docker).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from support.backends.compose.cli import ComposeCommand
from support.backends.compose.project import ComposeProject, ComposeService, compose_file_of, load_compose_project
from support.backends.docker.backend import _report_leftovers
from support.backends.docker.containers import ApiContainer, ContainerService, PostgresContainer
from support.backends.docker.disk import mount_data_disk
from support.backends.docker.engine import docker_client
from support.backends.docker.images import IMAGE_SPECS, ensure_image
from support.backends.docker.labels import remove_leftovers, run_labels
from support.backends.docker.specs import ContainerSpec
from support.core.config import Settings
from support.core.mounts import unmount
from support.core.ports import LOOPBACK
from support.proxy.link import start_link
from support.stack.readiness import http_ok, query_answers, tcp_answers
from support.stack.service_tables import StackFileError
from support.stack.services import Address, ServiceError
from support.stack.stack import Cleanup, Stack

__all__ = ["start_compose_stack", "compose_project_of", "PROJECT_LABEL", "project_name"]

PROJECT_LABEL = "com.docker.compose.project"
_SERVICE_LABEL = "com.docker.compose.service"


def project_name(run_id: str) -> str:
    """The Compose project name of run ``run_id`` (lower case, as Compose requires)."""
    return "chaos-suite-" + re.sub(r"[^a-z0-9_-]", "-", run_id.lower())


def compose_project_of(settings: Settings) -> ComposeProject | None:
    """The compose project the settings select, checked by Compose (one line when it refuses); None when
    the stack file is not a compose one."""
    found = compose_file_of(settings)
    return None if found is None else load_compose_project(*found)


class _Checked:
    """The x-chaos ``ready`` check of a service, when it has one, in place of its kind's own (a mixin)."""

    ready: tuple[()] | tuple[str, str] = ()
    sql_dsn: str = ""

    def is_ready(self) -> bool:
        if not self.ready:
            return super().is_ready()  # type: ignore[misc]  # a mixin: the next class in the MRO has it
        kind, target = self.ready
        if kind == "sql":
            return self.status() == "running" and query_answers(self.sql_dsn, target)  # type: ignore[attr-defined]
        self._check_listener()  # type: ignore[attr-defined]
        address = self.address  # type: ignore[attr-defined]
        return http_ok(f"http://{address}{target}") if kind == "http" else tcp_answers(address.host, address.port)


class ComposeContainer(_Checked, ContainerService):
    """A service of the project that is neither the database nor the target: ready when running (and healthy)."""

    def _kind_ready(self) -> bool:
        state = self.state()
        health = (state.get("Health") or {}).get("Status")
        return state.get("Status") == "running" and health in (None, "healthy")

    def is_ready(self) -> bool:
        return super().is_ready() if self.ready else self._kind_ready()


class ComposeApi(_Checked, ApiContainer):
    """The workload's target: ready when its health path answers at all (or by its x-chaos ``ready``)."""


class ComposePostgres(_Checked, PostgresContainer):
    """The project's PostgreSQL, with the superuser and application role the compose file gives."""

    def __init__(self, client, spec: ContainerSpec, described: ComposeService, container) -> None:
        info = described.postgres
        assert info is not None
        super().__init__(client, spec, described.port, info.password, container=container)
        self.database = info.database
        self.info = info

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """A libpq DSN for this server on 127.0.0.1 (the superuser's unless ``user`` is given)."""
        user = user or self.info.user
        known = self.info.password if user == self.info.user else self.info.app_password
        return f"host={LOOPBACK} port={self._port} dbname={dbname} user={user} password={password or known}"


def _spec(container, service: str) -> ContainerSpec:
    # the container exists already (Compose made it): the spec only names it for messages and the listener check
    return ContainerSpec(
        name=container.name,
        service=service,
        image=container.image.id,
        command=[],
        environment={},
        labels={},
        network_mode="host",
    )


def _service(client, container, described: ComposeService, project: ComposeProject) -> ContainerService:
    spec = _spec(container, described.name)
    host_network = container.attrs.get("HostConfig", {}).get("NetworkMode") == "host"
    if not host_network:
        spec.network = "bridge"  # no listener check: its port is published, not held by its own processes here
    service: _Checked
    if described.postgres is not None:
        service = ComposePostgres(client, spec, described, container)
    elif described.name == project.target:
        service = ComposeApi(client, spec, described.port, project.health_path, container=container)
    else:
        service = ComposeContainer(client, spec, described.port, container=container)
    database = project.database()
    info = database.postgres
    assert info is not None  # a service of kind postgres always has its info
    service.ready = described.ready
    service.sql_dsn = (
        f"host={LOOPBACK} port={database.port} dbname={info.database} user={info.user} password={info.password}"
    )
    return service


def _override(project: ComposeProject, labels: dict[str, str], proxied: dict[tuple[str, str], Address]) -> dict:
    """The override file: the run's labels everywhere, and each linked variable pointed at its proxy listener."""
    services: dict[str, dict] = {name: {"labels": dict(labels)} for name in project.services}
    for (user, used), listener in proxied.items():
        variable = project.links[(user, used)]
        value = project.services[user].environment[variable]
        port = project.services[used].port
        pointed = value
        for host in (LOOPBACK, "localhost", used):
            pointed = pointed.replace(f"{host}:{port}", f"{LOOPBACK}:{listener.port}")
        if pointed == value:
            raise StackFileError(
                f"{project.file}: x-chaos.links.{user}.{variable}: its value does not name "
                f"{used}'s address ({LOOPBACK}:{port} or {used}:{port}), so the suite cannot "
                "point it at the fault proxy"
            )
        services[user].setdefault("environment", {})[variable] = pointed
    return {"services": services}


_DEFAULT_PGDATA = "/var/lib/postgresql/data"


def _data_disk(
    client, config: dict, database: str, labels: dict[str, str], run_dir: Path, mib: int
) -> tuple[Path, dict]:
    """Mount the bounded disk (``pg_disk_mb`` MiB, docker/disk.py) for service ``database``; it and its override.

    The override binds the host tmpfs at the service's data directory (its ``PGDATA``, else the image's
    default): Compose merges ``volumes`` by container path, so this entry replaces the file's own volume there.
    """
    service = (config.get("services") or {}).get(database) or {}
    image = service.get("image")
    if not image:
        raise ServiceError(
            f"{database}: the compose file names no image for it, so pg_disk_mb cannot mount its data disk"
        )
    target = (service.get("environment") or {}).get("PGDATA") or _DEFAULT_PGDATA
    disk = mount_data_disk(client, image, labels, run_dir, mib)
    return disk, {"volumes": [{"type": "bind", "source": str(disk), "target": target}]}


def _config(command: ComposeCommand) -> dict:
    """The project as Compose resolves it (``config --format json``)."""
    return json.loads(command.run("config", "--format", "json", timeout=60))


def _labelled(labels: dict[str, str], config: dict) -> dict:
    """The project's own named volumes and networks (not external ones), each with the run's labels."""
    return {
        kind: {
            name: {"labels": dict(labels)}
            for name, thing in (config.get(kind) or {}).items()
            if not (thing or {}).get("external")
        }
        for kind in ("volumes", "networks")
    }


def start_compose_stack(settings: Settings, run_dir: Path) -> Stack:
    """Run the selected compose project for run ``run_dir.name``; return the ready stack.

    On any failure what was made is removed (``down -v``, the proxies) before the error propagates.
    """
    project = compose_project_of(settings)
    if project is None:
        raise StackFileError(f"{settings.stack_file}: not a compose file nor a stack file with [compose] file")
    client = docker_client()
    name = project_name(run_dir.name)
    labels = run_labels(run_dir.name)
    timings: dict[str, float] = {}
    started = time.monotonic()
    with Cleanup() as made:
        made.callback(client.close)
        _report_leftovers(remove_leftovers(client))
        env = dict(project.env)
        for variable, image in project.suite_images.items():
            env[variable] = ensure_image(
                client, IMAGE_SPECS[image], settings.docker_base_image, run_dir / f"docker-build-{image}.log"
            ).id
        timings["images_s"] = time.monotonic() - started
        proxied: dict[tuple[str, str], Address] = {}
        links = {}
        for user, used in project.links:
            link = start_link(
                run_dir, used, Address(LOOPBACK, project.services[used].port), protocol=project.services[used].protocol
            )
            made.callback(link.close)
            links[(user, used)] = link
            proxied[(user, used)] = link.address
        override = run_dir / "compose.override.json"
        base = ComposeCommand([project.file], name, env, project.file.parent)
        document = _override(project, labels, proxied)
        config = _config(base)
        document.update({kind: things for kind, things in _labelled(labels, config).items() if things})
        database = project.database()
        disk = None
        if settings.pg_disk_mb:  # the data on a bounded disk, which the disk-full fault fills (docker/disk.py)
            disk, bind = _data_disk(client, config, database.name, labels, run_dir, settings.pg_disk_mb)
            made.callback(unmount, disk)  # after down -v (callbacks run newest first)
            document["services"][database.name].update(bind)
        override.write_text(json.dumps(document, indent=2))
        command = ComposeCommand([project.file, override], name, env, project.file.parent)
        made.callback(_down, command, run_dir, list(project.services))
        up = time.monotonic()
        try:
            command.run(
                "up",
                "--wait",
                "--wait-timeout",
                str(int(settings.start_timeout)),
                "--no-build",
                "--quiet-pull",
                timeout=settings.start_timeout + 60,
                what=f"starting {project.file}",
            )
        except ServiceError as error:
            # the services' own last lines say why (the run directory and its logs go with the failed start)
            raise ServiceError(f"{error}{_why_down(client, name)}", logs=_tails(command)) from None
        timings["up_s"] = time.monotonic() - up
        containers = {
            c.labels.get(_SERVICE_LABEL): c
            for c in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={name}"})
        }
        services = {}
        for service_name in project.start_order:
            if service_name not in containers:
                raise ServiceError(f"{project.file}: Compose started no container for service {service_name}")
            services[service_name] = _service(client, containers[service_name], project.services[service_name], project)
        for service_name in project.start_order:
            services[service_name].wait_ready(settings.start_timeout)
        info = database.postgres
        postgres, target = services[database.name], services[project.target]
        # _service makes the database a ComposePostgres and the target a ComposeApi
        assert info is not None and isinstance(postgres, PostgresContainer) and isinstance(target, ApiContainer)
        postgres.disk_path = disk
        timings["total_s"] = time.monotonic() - started
        (run_dir / "compose.json").write_text(
            json.dumps(
                {
                    "project": name,
                    "file": str(project.file),
                    "override": str(override),
                    "containers": {n: s.container_name for n, s in services.items()},
                    "timings": {k: round(v, 3) for k, v in timings.items()},
                },
                indent=2,
            )
        )
        versions = {
            "compose_file": str(project.file),
            "docker_engine": client.version().get("Version", "unknown"),
            "compose": command.run("version", "--short", timeout=30).strip(),
        }
        stack = Stack(
            backend="compose",
            services=dict(services),
            api_url=target.url,
            links=links,
            workload=project.workload,
            health_path=project.health_path,
            admin_dsn=postgres.dsn(info.database),
            app_dsn=postgres.dsn(info.database, info.app_user, info.app_password),
            start_order=project.start_order,
            target=project.target,
            versions=versions,
            secrets=tuple(dict.fromkeys(project.secrets + (info.password, info.app_password))),
            cleanup=made.pop_all(),
        )
    return stack


def _why_down(client, name: str, lines: int = 3) -> str:
    """``; SERVICE exited (code N): LAST LINES`` for each container of project ``name`` that is not running."""
    said = []
    for container in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={name}"}):
        if container.status != "running":
            tail = container.logs(tail=lines).decode(errors="replace").split()
            said.append(
                f"; {container.labels.get(_SERVICE_LABEL)} {container.status} "
                f"(exit code {container.attrs['State'].get('ExitCode')}): {' '.join(tail)[-300:]}"
            )
    return "".join(said)


def _tails(command: ComposeCommand, lines: int = 20) -> str:
    """The last ``lines`` of every service's output, as ``docker compose logs`` shows them."""
    try:
        return command.run("logs", "--no-color", "--tail", str(lines), timeout=30)
    except ServiceError as error:
        return f"(no logs: {error})"


def _down(command: ComposeCommand, run_dir: Path, services: list[str]) -> None:
    """Save each service's logs in the run directory, then ``down -v``: containers, networks, volumes."""
    logs = run_dir / "compose-logs"
    logs.mkdir(exist_ok=True)
    for service in services:
        try:
            out = command.run("logs", "--no-color", "--timestamps", service, timeout=60)
        except ServiceError as error:
            out = f"(no logs: {error})\n"
        (logs / f"{service}.log").write_text(out)
    down = ("down", "--volumes", "--remove-orphans", "--timeout", "5")
    try:
        command.run(*down, timeout=120)
    except ServiceError:
        # the compose file moved or broke meanwhile: Compose finds the project's containers by its label alone
        ComposeCommand([], command.project, command.env, run_dir).run(*down, timeout=120)
