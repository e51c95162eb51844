"""The Docker backend's command services beside the workload's target: any program in a container.

Each runs on the host network (so the fault proxy, a process on 127.0.0.1, can
stand on every ``uses`` edge) in its own image (``[services.NAME.docker] build``
or ``image``), else in the reference API's image with the repository mounted
at /suite, as the target does; it is ready by its stack file's ``ready`` kind.
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from support.backends.docker.containers import ContainerService
from support.backends.docker.images import IMAGE_SPECS, BuiltImage, ensure_image, service_image_spec
from support.backends.docker.specs import SUITE_MOUNT, api_spec, in_mount
from support.core.ports import LOOPBACK
from support.stack.definitions import ServiceDefinition, StackDefinition
from support.stack.operations import render
from support.stack.readiness import command_succeeds, http_answers, http_ok, query_answers, tcp_answers

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = ["CommandContainer", "free_ports", "command_image", "docker_values"]


def free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (all bound at the same time, so the kernel hands out different ones)."""
    with ExitStack() as sockets:
        bound = [sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for one in bound:
            one.bind((LOOPBACK, 0))
        return [one.getsockname()[1] for one in bound]


def command_image(
    client: DockerClient, service: ServiceDefinition, base: str, run_dir: Path, images: dict[str, BuiltImage]
) -> str:
    """The image id or name ``service`` runs in; what is built is added to ``images`` (by service name)."""
    if service.docker_build is not None:
        images[service.name] = ensure_image(
            client,
            service_image_spec(service.docker_build, service.docker_dockerfile),
            base,
            run_dir / f"docker-build-{service.name}.log",
            root=service.docker_build,
            base_required=False,
        )
        return images[service.name].id
    if service.docker_image:
        return service.docker_image
    if "reference-api" not in images:
        images["reference-api"] = ensure_image(client, IMAGE_SPECS["api"], base, run_dir / "docker-build-api.log")
    return images["reference-api"].id


def docker_values(definition: StackDefinition, service: ServiceDefinition, values: dict[str, str]) -> dict[str, str]:
    """The host's placeholder ``values`` as a container of ``service`` sees them (the repository at /suite)."""
    inside = {**values, "python": "python", "repo": SUITE_MOUNT}
    if service.docker_build is None:  # a service built into its own image may live anywhere
        inside["stack_dir"] = in_mount(definition.path.parent)
    return inside


class CommandContainer(ContainerService):
    """A ``kind = "command"`` service in a container (host network), ready by its stack file's ``ready``."""

    def __init__(
        self,
        client: DockerClient,
        run_id: str,
        labels: dict[str, str],
        image: str,
        port: int,
        service: ServiceDefinition,
        values: dict[str, str],
        host_values: dict[str, str],
        ready_dsn: str = "",
    ) -> None:
        spec = api_spec(run_id, image, labels, port, None, service, values)
        environment = {k: v for k, v in spec.environment.items() if k != "APP_NAME" or k in service.env}
        super().__init__(
            client,
            replace(spec, name=f"chaos-suite-{run_id}-{service.name}", service=service.name, environment=environment),
            port,
        )
        self.definition = service
        self.url = f"http://{LOOPBACK}:{port}"
        self.health_url = self.url + service.health_path
        # a ready command runs on the host, with the host's interpreter and paths
        self._host_values = {**host_values, "python": sys.executable, "host": LOOPBACK, "port": str(port)}
        self._ready_dsn = ready_dsn

    def start(self, timeout: float = 30.0) -> None:
        ready = self.definition.ready
        super().start(ready.timeout if ready and ready.timeout else timeout)

    def is_ready(self) -> bool:
        ready = self.definition.ready
        running = self.status() == "running"
        if ready is None or ready.kind == "command":
            argv = [render(part, self._host_values) for part in ready.argv] if ready else []
            return running and command_succeeds(argv, self.definition.cwd, dict(os.environ))
        if ready.kind == "sql":
            return running and query_answers(self._ready_dsn, ready.target)
        self._check_listener()  # an answer from another process is not ours
        if ready.kind == "tcp":
            return tcp_answers(LOOPBACK, self._port)
        return (http_answers if ready.any_status else http_ok)(self.url + ready.target)
