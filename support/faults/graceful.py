"""A deploy's restart: the service is asked to stop (SIGTERM), its exit awaited, and it is started again.

The fault keeps the moments the in-flight checker
(:mod:`support.checks.in_flight`) judges on, all on ``time.monotonic()``:
``signalled_at`` (just before the stop signal), ``exited_at`` (the service is
gone) and ``ready_at`` (ready again). A service that does not exit within
``timeout`` seconds is killed by its backend (process: SIGKILL to its group;
Docker: ``container.stop(timeout)``), and the fault says so in ``heal_note``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from support.faults.process import ServiceFault

__all__ = ["GracefulRestart"]


@dataclass
class GracefulRestart(ServiceFault):
    """Stop ``service`` gracefully within ``timeout`` s (then SIGKILL), start it again, return once it is ready."""

    timeout: float
    instant: bool = True
    name: str = "graceful restart"
    signalled_at: float | None = None
    exited_at: float | None = None
    ready_at: float | None = None

    def inject(self) -> None:
        self.signalled_at = time.monotonic()
        self.service.stop(self.timeout)
        self.exited_at = time.monotonic()
        drained = self.exited_at - self.signalled_at
        if drained >= self.timeout:
            self.heal_note = f"it did not exit within {self.timeout:g} s of the stop signal and was killed"
        else:
            self.heal_note = f"it exited {drained:.2f} s after the stop signal"
        self.service.start(self.timeout)
        self.ready_at = time.monotonic()

    def heal(self) -> None:
        self.service.start(self.timeout)
