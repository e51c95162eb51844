"""The check a Docker test starts with: an engine answers, or the test is skipped (failed under CHAOS_REQUIRE_DOCKER=1,
where CI must run the Docker tests, not skip them)."""

from __future__ import annotations

import os

import pytest
from docker import DockerClient

from support.backends.docker.engine import docker_client
from support.stack.services import ServiceError

__all__ = ["docker_engine", "require_docker"]


def docker_engine(timeout: float = 120.0) -> DockerClient:
    """A client of the Docker engine (``timeout`` s per API call); skips or fails the test when none answers."""
    try:
        return docker_client(timeout=timeout)
    except ServiceError as error:
        if os.environ.get("CHAOS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"CHAOS_REQUIRE_DOCKER=1 but {error}")
        pytest.skip(f"no Docker daemon answers: {error}")


def require_docker() -> None:
    """Skip (or, under CHAOS_REQUIRE_DOCKER=1, fail) the test unless a Docker engine answers."""
    docker_engine().close()
