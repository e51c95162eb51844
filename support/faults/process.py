"""Faults on a service's process life: restart, kill, stop, pause, and the whole stack restarted.

Every one that waits for a service to come back takes its deadline
(``timeout``, seconds) from the caller: the settings' ``start_timeout``, handed
in by :class:`support.faults.factory.FaultFactory`. There is no default, so a
step cannot silently wait for another bound than the one the user set.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

from support.faults.base import Fault
from support.stack.services import Service

__all__ = ["ServiceFault", "ServiceRestart", "ServiceKill", "ServiceStop", "ServicePause", "StackRestart"]


@dataclass
class ServiceFault(Fault):
    """A fault on one service of the stack; its target is the service."""

    service: Service

    @property
    def target(self) -> str:
        return self.service.name


@dataclass
class ServiceRestart(ServiceFault):
    """Restart a service (PostgreSQL: ``fast`` or ``immediate`` shutdown); returns once it is ready (``timeout`` s)."""

    timeout: float
    mode: str = "fast"
    instant: bool = True

    @property
    def name(self) -> str:
        return "restart" if self.mode == "fast" else f"restart ({self.mode})"

    def inject(self) -> None:
        self.service.restart(self.mode, self.timeout)

    def heal(self) -> None:
        self.service.start(self.timeout)


@dataclass
class ServiceKill(ServiceFault):
    """Kill a service with a signal (SIGKILL by default); its restart policy brings it back.

    The heal makes sure it runs again, within ``timeout`` s.
    """

    timeout: float
    sig: int = signal.SIGKILL
    instant: bool = True

    @property
    def name(self) -> str:
        return f"kill ({signal.Signals(self.sig).name})"

    def inject(self) -> None:
        self.service.kill(self.sig)

    def heal(self) -> None:
        self.service.start(self.timeout)


@dataclass
class ServiceStop(ServiceFault):
    """Stop a service gracefully (SIGKILL after ``timeout`` s); healed by starting it again within ``timeout`` s."""

    timeout: float
    instant: bool = False
    name: str = "stop"

    def inject(self) -> None:
        self.service.stop(self.timeout)

    def heal(self) -> None:
        self.service.start(self.timeout)


@dataclass
class ServicePause(ServiceFault):
    """Freeze a service (SIGSTOP / docker pause): it accepts connections but answers nothing."""

    instant: bool = False
    name: str = "pause"

    def inject(self) -> None:
        self.service.pause()

    def heal(self) -> None:
        self.service.resume()


@dataclass
class StackRestart(Fault):
    """Stop every service and start them all again, each step within ``timeout`` s."""

    restart_all: Callable[[float], None]
    ensure_running: Callable[[float], None]
    timeout: float
    instant: bool = True
    name: str = "restart"
    target: str = "whole stack"

    def inject(self) -> None:
        self.restart_all(self.timeout)

    def heal(self) -> None:
        self.ensure_running(self.timeout)
