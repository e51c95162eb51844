"""Latency and silence: requests slower than a bound, and the longest time nothing was answered.

Times are ``time.monotonic()`` seconds, latencies and durations seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from support.checks.messages import describe, origin, plural, require
from support.checks.verdict import CheckFailed
from support.load.history import Request

__all__ = ["is_timeout", "slow_requests", "check_no_request_slower_than", "Silence", "longest_silence"]


def is_timeout(r: Request) -> bool:
    """True when the request hit the client's timeout (before or after connecting)."""
    return r.error in ("timeout", "connect timeout")


def slow_requests(history: Sequence[Request], bound: float) -> list[Request]:
    """Requests whose latency exceeds ``bound`` seconds, plus every request that hit the client
    timeout (its real latency is unknown, so it is not proven under any bound), by start."""
    return [r for r in history if r.latency > bound or is_timeout(r)]


def check_no_request_slower_than(history: Sequence[Request] | None, seconds: float) -> None:
    """Fail if any request took longer than ``seconds`` or timed out."""
    history = require(history)
    slow = slow_requests(history, seconds)
    if not slow:
        return
    since = origin(history)
    timeouts = sum(is_timeout(r) for r in slow)
    worst = sorted(slow, key=lambda r: r.latency, reverse=True)[:3]
    raise CheckFailed(
        f"{plural(len(slow), 'request')} took longer than {seconds:g} s"
        f" ({timeouts} timed out); slowest: " + "; ".join(describe(r, since) for r in worst)
    )


@dataclass(frozen=True)
class Silence:
    """The longest stretch without any answer: between the answers (request ends) at ``after`` and ``before``."""

    after: float | None
    before: float | None

    @property
    def seconds(self) -> float:
        """The silence's length in seconds; 0 when there was none."""
        return 0.0 if self.after is None or self.before is None else self.before - self.after


def longest_silence(history: Sequence[Request], since: float, until: float | None = None) -> Silence:
    """The longest time the service answered nothing, from the last answer before ``since`` to ``until``.

    An answer is the end of a request that got an HTTP status (any status: a
    503 is an answer; a client timeout or a refused connect is not). This is how
    a freeze shows when requests wait instead of failing, which the outage
    window of :func:`support.checks.recovery.recovery` cannot see. ``until``
    defaults to the last answer.
    """
    ends = sorted(r.end for r in history if r.status is not None)
    before_since = [t for t in ends if t < since]
    inside = [t for t in ends if t >= since and (until is None or t <= until)]
    points = before_since[-1:] + inside
    if until is not None and points:
        points.append(until)  # a silence still going on at ``until`` counts up to it
    best = Silence(None, None)
    for a, b in zip(points, points[1:]):
        if b - a > best.seconds:
            best = Silence(a, b)
    return best
