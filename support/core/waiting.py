"""Waiting with a deadline measured on the clock, never by counting tries: the suite's one way to wait.

:func:`wait_until` polls a check until its result is what the caller waits for
(``done``), treating the listed transient exceptions (``retry_on``) as "not
yet"; :func:`retry` is the same loop for a call whose every result counts, so
only its exceptions are waited out. On timeout both raise :class:`WaitTimeout`,
which names what was waited for, the last result seen and the last error, and
carries them (``last``, ``error``) for a caller that words its own failure.

Why not tenacity (which the reference API uses for its own retries): its
``stop_after_delay`` and ``stop_before_delay`` measure on ``time.monotonic``
read inside its call state (only the sleep is injectable), so a test cannot
drive a deadline with a fake clock, exactly and fast; its timeout error
(``RetryError``) says neither what was awaited nor what was last seen, so each
caller would wrap it; and a value to wait on (``retry_if_result``), the
exceptions to wait out (``retry_if_exception_type``) and ``reraise`` are three
arguments at every call site where here the defaults cover the common case.
Waiting on a :class:`threading.Condition` (a child's exit, a worker's message)
uses ``Condition.wait_for`` instead: it is woken, not polled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Deadline", "wait_until", "retry", "WaitTimeout"]

T = TypeVar("T")

#: which exceptions mean "not yet": exception types, or a predicate over the exception
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]

_NOTHING = object()


class WaitTimeout(TimeoutError):
    """A condition did not hold before its deadline; the message says what, for how long, and what was last seen.

    ``last`` is the last result of the check (None if it never returned),
    ``error`` the last transient exception it raised (None if none).
    """

    def __init__(self, message: str, last: object = None, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.last = last
        self.error = error


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


def _transient(retry_on: RetryOn, error: Exception) -> bool:
    if isinstance(retry_on, (tuple, type)):
        return isinstance(error, retry_on)
    return bool(retry_on(error))


def _seen(value: object) -> str:
    text = " ".join(repr(value).split())  # one line, whatever the value holds
    return text if len(text) <= 200 else text[:197] + "..."


def wait_until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    *,
    done: Callable[[T], object] = bool,
    retry_on: RetryOn = Exception,
    interval: float = 0.01,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``check`` every ``interval`` s until ``done(result)`` (by default: the result is truthy); return it.

    An exception that ``retry_on`` lists (types, or a predicate; by default any
    ``Exception``) counts as "not yet"; any other propagates at once. Once
    ``timeout`` seconds have passed on ``clock``, :class:`WaitTimeout` is raised,
    naming the last result seen (unless a bare True/False/None) and the last error.
    """
    deadline = Deadline(timeout, clock)
    last: object = _NOTHING
    last_error: Exception | None = None
    while True:
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 - retry_on decides which failures mean "not yet"
            if not _transient(retry_on, error):
                raise
            last_error = error
        else:
            if done(result):
                return result
            last = result
        if deadline.expired:
            reasons = []
            if last is not _NOTHING and not isinstance(last, bool) and last is not None:
                reasons.append(f"last seen: {_seen(last)}")
            if last_error is not None:
                text = " ".join(str(last_error).split())  # one line, whatever the driver printed
                reasons.append(f"last error: {type(last_error).__name__}: {text}")
            reason = f" ({'; '.join(reasons)})" if reasons else ""
            raise WaitTimeout(
                f"{what} did not happen within {timeout:g} s{reason}", None if last is _NOTHING else last, last_error
            )
        sleep(min(interval, deadline.remaining()) or interval)


def _any_result(result: object) -> bool:
    return True


def retry(
    call: Callable[[], T],
    timeout: float,
    what: str,
    *,
    retry_on: RetryOn = Exception,
    interval: float = 0.01,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``call`` every ``interval`` s until it returns without a transient error; return what it returned.

    Whatever it returns counts, None and empty results too; :func:`wait_until`
    with ``done`` always true. After ``timeout`` s, :class:`WaitTimeout` naming
    the last error (its ``error``).
    """
    return wait_until(
        call, timeout, what, done=_any_result, retry_on=retry_on, interval=interval, clock=clock, sleep=sleep
    )
