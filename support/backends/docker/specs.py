"""How the Docker backend creates each container: :class:`ContainerSpec` and the specs of PostgreSQL and the API.

Pure data, no engine call: what image, command, environment, labels, network,
ports and mounts a service's container gets (the keyword arguments of
``containers.create``); :mod:`support.backends.docker.containers` makes and
drives the containers from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import REPO_ROOT
from support.backends.docker.labels import SERVICE_LABEL
from support.core.ports import LOOPBACK
from support.stack.operations import render
from support.stack.services import ServiceError
from support.stack.stack_file import ApiDefinition

__all__ = [
    "ContainerSpec",
    "postgres_spec",
    "api_spec",
    "in_mount",
    "PG_DATA_MOUNT",
    "SUITE_MOUNT",
    "UNLESS_STOPPED",
    "BRIDGE_PORTS",
]

PG_DATA_MOUNT = "/var/lib/postgresql/data"
SUITE_MOUNT = "/suite"
UNLESS_STOPPED = {"Name": "unless-stopped", "MaximumRetryCount": 0}
# the port each service listens on inside its own network namespace on a bridge network
BRIDGE_PORTS = {"postgres": 5432, "api": 8000}


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
    #: the user the command runs as (None: the image's ``USER``)
    user: str | None = None

    def create_kwargs(self) -> dict[str, Any]:
        """The arguments for ``client.containers.create``."""
        kwargs: dict[str, Any] = dict(
            image=self.image,
            command=self.command,
            name=self.name,
            environment=self.environment,
            labels={**self.labels, SERVICE_LABEL: self.service},
            detach=True,
            restart_policy=dict(UNLESS_STOPPED),
            volumes=self.volumes,
            # json-file, whatever the engine's default: the logs API must be able to read it back
            log_config={"Type": "json-file", "Config": {"max-size": "50m", "max-file": "2"}},
        )
        if self.working_dir:
            kwargs["working_dir"] = self.working_dir
        if self.user:
            kwargs["user"] = self.user
        if self.network is not None:
            kwargs.update(network=self.network, ports=self.ports, hostname=self.service)
        else:
            kwargs.update(network_mode=self.network_mode)
        return kwargs


def postgres_spec(
    run_id: str,
    image: str,
    labels: dict[str, str],
    volume: str,
    port: int,
    network: str | None,
    admin_password: str,
    app_password: str,
    database: str = "users",
    role: str = "app",
) -> ContainerSpec:
    """The PostgreSQL container: listens on 127.0.0.1:``port`` (host network) or publishes it there (bridge)."""
    inner_port = port if network is None else BRIDGE_PORTS["postgres"]
    listen = LOOPBACK if network is None else "*"
    command = [
        "postgres",
        "-c",
        f"listen_addresses={listen}",
        "-p",
        str(inner_port),
        "-c",
        "max_connections=100",
        "-c",
        "shared_buffers=32MB",
        "-c",
        "log_line_prefix=%m [%p] %a ",
    ]
    return ContainerSpec(
        name=f"chaos-suite-{run_id}-postgres",
        service="postgres",
        image=image,
        command=command,
        environment={
            "POSTGRES_PASSWORD": admin_password,
            "APP_USER": role,
            "APP_PASSWORD": app_password,
            "APP_DB": database,
        },
        labels=labels,
        network=network,
        ports={} if network is None else {f"{inner_port}/tcp": (LOOPBACK, port)},
        volumes={volume: {"bind": PG_DATA_MOUNT, "mode": "rw"}},
    )


def api_spec(
    run_id: str,
    image: str,
    labels: dict[str, str],
    port: int,
    network: str | None,
    api: ApiDefinition,
    values: dict[str, str],
) -> ContainerSpec:
    """The service under test in a container: 127.0.0.1:``port`` (host network) or published there (bridge).

    It runs the stack file's command (``[api.docker] command``, else ``[api] command``)
    in the API image (built from ``[api.docker] build``, or ``[api.docker] image``, else the
    reference API's: Python with its requirements), with the suite's repository mounted
    read-only at /suite: ``{python}`` is ``python``, ``{repo}`` is /suite and ``{stack_dir}``
    the stack file's folder under it. It starts in ``[api] cwd`` under /suite, except in an
    image built from the service's own Dockerfile, whose ``WORKDIR`` holds its code (that
    service, and its stack file, may then live outside the repository).
    """
    inner_port = port if network is None else BRIDGE_PORTS["api"]
    values = {**values, "host": LOOPBACK if network is None else "0.0.0.0", "port": str(inner_port)}
    command = [render(part, values) for part in (api.docker_command or api.command)]
    environment = {"APP_NAME": "users-api", **api.environment(values)}
    return ContainerSpec(
        name=f"chaos-suite-{run_id}-api",
        service="api",
        image=image,
        command=command,
        environment=environment,
        labels=labels,
        network=network,
        ports={} if network is None else {f"{inner_port}/tcp": (LOOPBACK, port)},
        volumes={str(REPO_ROOT): {"bind": SUITE_MOUNT, "mode": "ro"}},
        working_dir=None if api.docker_build is not None else in_mount(api.cwd),
    )


def in_mount(path: Path) -> str:
    """Where a path of the suite's repository is inside the API container."""
    try:
        return str(Path(SUITE_MOUNT) / path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        raise ServiceError(
            f"the docker backend mounts only the suite's repository ({REPO_ROOT}); {path} is "
            "outside it: move your service's files under the repository"
        ) from None
