"""The Docker backend's engine client: one Docker SDK client that has answered a ping, or one clear error.

Every other module of the backend (and the compose backend, the reaper's tests)
gets its client here, so the advice when no engine answers is written once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from support.stack.services import ServiceError

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = ["docker_client"]

_FIX_DAEMON = (
    "start it (`sudo systemctl start docker`, or `sudo bash .ci/docker-setup.sh`, which installs and "
    "starts one), point DOCKER_HOST at a running engine, or run on the process backend "
    "(-D backend=process)"
)


def docker_client(timeout: float = 120.0) -> DockerClient:
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
            raise ServiceError(
                f"no permission to use the Docker daemon at {where}: add your user to the "
                "`docker` group (then log in again) or run as root"
            ) from None
        raise ServiceError(f"cannot reach the Docker daemon at {where} ({reason[:160]}): {_FIX_DAEMON}") from None
    return client
