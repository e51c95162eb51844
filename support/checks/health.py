"""The API's health endpoint, read and awaited with a deadline."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import httpx

from support.checks.verdict import CheckFailed
from support.core.waiting import Deadline, WaitTimeout, wait_until

__all__ = ["HealthReading", "read_health", "wait_for_health", "HEALTHY", "UNREACHABLE"]

HEALTHY = "healthy"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class HealthReading:
    """One answer of the health endpoint: status code (None if no answer), body, seconds taken.

    Healthy is a 200; "database unreachable" is a 5xx. When the body says
    anything about ``database`` (the reference API does), it must agree.
    """

    status: int | None
    body: dict
    seconds: float
    error: str = ""

    @property
    def healthy(self) -> bool:
        return self.status == 200 and self.body.get("database", "reachable") == "reachable"

    @property
    def database_unreachable(self) -> bool:
        return (
            self.status is not None
            and 500 <= self.status < 600
            and self.body.get("database", "unreachable") == "unreachable"
        )

    def describe(self) -> str:
        if self.status is None:
            return f"no answer ({self.error}) after {self.seconds:.2f} s"
        return f"{self.status} {self.body} in {self.seconds:.2f} s"


def read_health(health_url: str, timeout: float = 2.0) -> HealthReading:
    """Ask the health endpoint once, giving up after ``timeout`` s."""
    started = time.monotonic()
    try:
        response = httpx.get(health_url, timeout=timeout)
    except httpx.HTTPError as error:
        return HealthReading(None, {}, time.monotonic() - started, f"{type(error).__name__}: {error}")
    try:
        body = response.json()
    except ValueError:
        body = {"raw": response.text[:200]}
    return HealthReading(
        response.status_code, body if isinstance(body, dict) else {"raw": body}, time.monotonic() - started
    )


def wait_for_health(health_url: str, expect: str, timeout: float, interval: float = 0.05) -> HealthReading:
    """Poll the health endpoint until it reports ``expect`` (``healthy`` or ``unreachable``).

    Returns the first matching reading; raises :class:`CheckFailed` naming the
    last answer once ``timeout`` seconds have passed.
    """
    if expect not in (HEALTHY, UNREACHABLE):
        raise ValueError(f"expect must be {HEALTHY!r} or {UNREACHABLE!r}")
    wanted = "healthy" if expect == HEALTHY else "the database as unreachable"
    deadline = Deadline(timeout)  # each read's own timeout shrinks with it
    try:
        return wait_until(
            lambda: read_health(health_url, timeout=max(0.2, min(2.0, deadline.remaining() + 0.5))),
            timeout,
            f"the health endpoint reporting {wanted}",
            interval=interval,
            retry_on=(),
            done=lambda last: last.healthy if expect == HEALTHY else last.database_unreachable,
        )
    except WaitTimeout as waited:
        raise CheckFailed(
            f"the health endpoint did not report {wanted} within {timeout:g} s; "
            f"last answer: {cast(HealthReading, waited.last).describe()}"
        ) from None
