"""A deploy's restart: the service is asked to stop (SIGTERM), its exit awaited, and it is started again.

The fault keeps the moments the in-flight checker
(:mod:`support.checks.in_flight`) judges on, all on ``time.monotonic()``:
``signalled_at`` (just before the stop signal), ``exited_at`` (the service is
gone) and ``ready_at`` (ready again). A service that does not exit within
``timeout`` seconds is killed by its backend (process: SIGKILL to its group;
Docker: ``container.stop(timeout)``), and the fault says so in ``heal_note``.

:class:`RollingRestart` does the same to each replica behind a balancer in turn,
the next one only once the balancer sends requests to the last one again.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import httpx

from support.core.waiting import WaitTimeout, wait_until
from support.faults.base import Fault
from support.faults.process import ServiceFault
from support.stack.services import Service, ServiceError

__all__ = ["GracefulRestart", "RollingRestart", "wait_balanced"]


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


#: what a balancer's probe asks for: a path no API serves, so its answer costs nothing and its log line is unmistakable
_PROBE_PATH = "/chaos-suite-rolling-probe"


def wait_balanced(balancer_url: str, replica: Service, timeout: float, interval: float = 0.1) -> float:
    """Wait until the balancer at ``balancer_url`` sends requests to ``replica`` again; return when (monotonic s).

    The balancer is asked for a probe path every ``interval`` s, and the replica's own log
    (its access log) is read for that probe: the balancer routes to it again once one arrives
    there. Its readiness alone is not enough: a balancer takes it back only after its own
    health checks pass (HAProxy's ``rise``), and a rolling restart that stops the next replica
    before that leaves no replica in rotation. Raises :class:`ServiceError` after ``timeout`` s.
    """
    probe = f"{_PROBE_PATH}-{replica.name}-{secrets.token_hex(4)}"
    since = time.time() - 1.0  # the log's stamps are wall-clock; a second of margin for their resolution

    def arrived() -> bool:
        try:
            httpx.get(balancer_url.rstrip("/") + probe, timeout=1.0)
        except httpx.HTTPError:
            pass  # the balancer refusing is "not yet"
        return probe in replica.logs(since)

    try:
        wait_until(arrived, timeout, f"the balancer sending requests to {replica.name} again", interval=interval)
    except WaitTimeout:
        raise ServiceError(
            f"the balancer sent no request to {replica.name} within {timeout:g} s of it being ready again "
            f"(a probe of {probe} never reached it)",
            replica.logs(since)[-2000:],
        ) from None
    return time.monotonic()


@dataclass
class RollingRestart(Fault):
    """A deploy across the replicas behind a balancer: each of ``replicas`` in turn restarted gracefully
    (:class:`GracefulRestart`: SIGTERM, its exit awaited for at most ``timeout`` s, started, ready), then the
    next one only once the balancer at ``balancer_url`` sends it requests again (:func:`wait_balanced`).

    ``restarts`` keeps each replica's moments; there its ``ready_at`` is the moment the balancer took it back,
    so the in-flight checker's drain window of each replica runs from its stop signal to that moment.
    """

    replicas: list[Service]
    balancer_url: str
    timeout: float
    instant: bool = True
    name: str = "rolling graceful restart"
    restarts: list[GracefulRestart] = field(default_factory=list)

    @property
    def target(self) -> str:
        return ", ".join(replica.name for replica in self.replicas)

    def inject(self) -> None:
        for replica in self.replicas:
            restart = GracefulRestart(replica, self.timeout)
            self.restarts.append(restart)
            restart.inject()
            self.heal_note = "; ".join(f"{r.service.name}: {r.heal_note}" for r in self.restarts if r.heal_note)
            restart.ready_at = wait_balanced(self.balancer_url, replica, self.timeout)

    def heal(self) -> None:
        for replica in self.replicas:  # start is a no-op on a replica that runs
            replica.start(self.timeout)
