"""Waiting with a deadline measured on the clock, never by counting tries."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

__all__ = ["Deadline", "wait_until", "WaitTimeout"]

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A condition did not hold before its deadline; the message says what and for how long."""


class Deadline:
    """A point on the monotonic clock, ``seconds`` from now."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self.at


def wait_until(check: Callable[[], T], timeout: float, what: str, *, interval: float = 0.01,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``check`` every ``interval`` s until it returns something truthy; return that.

    Exceptions from ``check`` count as "not yet" and the last one is named in
    the :class:`WaitTimeout` raised once ``timeout`` seconds have passed.
    """
    deadline = Deadline(timeout, clock)
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - any failure of the check means "not yet"
            last_error = error
        if deadline.expired:
            text = " ".join(str(last_error).split())  # one line, whatever the driver printed
            reason = f" (last error: {type(last_error).__name__}: {text})" if last_error else ""
            raise WaitTimeout(f"{what} did not happen within {timeout:g} s{reason}")
        sleep(min(interval, deadline.remaining()) or interval)
