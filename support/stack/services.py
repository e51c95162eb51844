"""What every backend offers for each named service of the stack.

A scenario never knows which backend runs it: the process backend and the
Docker backend both hand out objects that satisfy :class:`Service`, collected
in a :class:`support.stack.stack.Stack`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Address", "Service", "ServiceError", "RestartMode", "RESTART_MODES"]

RestartMode = str
RESTART_MODES = ("fast", "immediate", "smart")


class ServiceError(RuntimeError):
    """A service could not be started, stopped or reached in time.

    The message is one line that says what failed and how to fix it; ``logs``
    carries the tail of the service's own output for the evidence.
    """

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


@dataclass(frozen=True, slots=True)
class Address:
    """Where a service listens (always 127.0.0.1 in this repository's runs)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@runtime_checkable
class Service(Protocol):
    """One named service (``api``, ``postgres``) under a backend's control.

    Every method that waits takes a deadline in seconds and raises
    :class:`ServiceError` when it passes. The address never changes across
    restarts. A service has a restart policy like Docker's ``unless-stopped``:
    after :meth:`kill` or a crash it comes back by itself; after :meth:`stop`
    it stays down until :meth:`start`.
    """

    name: str

    @property
    def address(self) -> Address: ...

    def start(self, timeout: float = 30.0) -> None:
        """Start (if not running) and return once ready, within ``timeout`` s."""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout`` s); stays down."""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole service at once; returns without waiting."""

    def restart(self, mode: RestartMode = "fast", timeout: float = 30.0) -> None:
        """Stop (PostgreSQL: shutdown ``mode``) and start; return once ready."""

    def pause(self) -> None:
        """Freeze every process of the service (SIGSTOP / docker pause)."""

    def resume(self) -> None:
        """Undo :meth:`pause`; a no-op when not paused."""

    def is_ready(self) -> bool:
        """A domain check that answers within about a second (SQL ``SELECT 1``, ``GET /health``)."""

    def wait_ready(self, timeout: float) -> None:
        """Return once :meth:`is_ready`; raise :class:`ServiceError` with logs after ``timeout`` s."""

    def logs(self, since: float | None = None) -> str:
        """The service's output, from wall-clock epoch second ``since`` if given."""

    def close(self) -> None:
        """Stop and remove everything this service left (processes, containers); idempotent."""
