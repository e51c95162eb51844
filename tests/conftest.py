"""Session set-up shared by every test: the Docker stack's images, built once before the first test needs them.

`.ci/docker-setup.sh` makes the engine and the base image; the stack's images need the Docker SDK of the
venv that the README's test command has just made, so they are built here (reused while their inputs are
unchanged: a no-op after the first session). Without an engine nothing is built and the Docker tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from support import REPO_ROOT


def pytest_sessionstart(session) -> None:
    if shutil.which("docker") is None:
        return
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode != 0:
        return
    built = subprocess.run(
        [sys.executable, "-m", "support.backends.docker.images"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={
            **os.environ,
            "CHAOS_DOCKER_BASE_IMAGE": os.environ.get("CHAOS_DOCKER_BASE_IMAGE", "debian:bookworm-slim"),
        },
    )
    if built.returncode != 0:  # the Docker tests will say why; the rest of the session still runs
        print(f"conftest: the stack's images could not be built:\n{built.stdout}{built.stderr}", file=sys.stderr)
