"""Status codes: which failures were answered 503, and which requests failed after a given moment.

Times are ``time.monotonic()`` seconds. A request is non-ok when its outcome is
``fail`` or ``info``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from support.checks.durability import lost_on_read, lost_reads_sentence
from support.checks.messages import describe, origin, plural, require, seconds
from support.checks.verdict import CheckFailed
from support.load.history import OK, Request

__all__ = ["Not503", "failures_not_503", "check_failures_are_503", "failures_after", "check_no_failures_after"]


@dataclass(frozen=True)
class Not503:
    """Non-ok requests not answered with 503: ``statuses`` got another HTTP status,
    ``transport`` got no answer at all (refused, reset, timeout, client overloaded)."""

    statuses: list[Request]
    transport: list[Request]

    def __len__(self) -> int:
        return len(self.statuses) + len(self.transport)


def failures_not_503(history: Sequence[Request]) -> Not503:
    """The non-ok requests whose status is not 503, split into other statuses and no status."""
    bad = [r for r in history if r.outcome != OK and r.status != 503]
    return Not503(statuses=[r for r in bad if r.status is not None], transport=[r for r in bad if r.status is None])


def check_failures_are_503(history: Sequence[Request] | None, allow_transport_errors: bool = False) -> None:
    """Fail if a non-ok request got a status other than 503, or (unless allowed) no answer at all."""
    history = require(history)
    found = failures_not_503(history)
    transport = [] if allow_transport_errors else found.transport
    if not found.statuses and not transport:
        return
    parts = []
    if found.statuses:
        by_status = Counter(r.status for r in found.statuses)
        parts.append(
            f"{len(found.statuses)} with another status ("
            + ", ".join(f"{s} x{n}" for s, n in by_status.most_common())
            + ")"
        )
    if transport:
        by_error = Counter(r.error or "no answer" for r in transport)
        parts.append(
            f"{len(transport)} with no answer (" + ", ".join(f"{e} x{n}" for e, n in by_error.most_common(5)) + ")"
        )
    total = len(found.statuses) + len(transport)
    first = min(found.statuses + transport, key=lambda r: r.start)
    lost = lost_on_read(history)  # a 404 for an acknowledged write is no wrong status but a lost write
    raise CheckFailed(
        f"{plural(total, 'failed request')} not answered with 503: "
        + "; ".join(parts)
        + f"; first: {describe(first, origin(history))}"
        + (f"; {lost_reads_sentence(lost, history)}" if lost else "")
    )


def failures_after(history: Sequence[Request], t: float) -> list[Request]:
    """Non-ok requests that started at or after monotonic ``t``."""
    return [r for r in history if r.start >= t and r.outcome != OK]


def check_no_failures_after(history: Sequence[Request] | None, t: float, what: str) -> None:
    """Fail if a request that started at or after ``t`` (the moment ``what`` describes) was non-ok."""
    history = require(history)
    bad = failures_after(history, t)
    if not bad:
        return
    since = origin(history)
    bad.sort(key=lambda r: r.start)
    raise CheckFailed(
        f"{plural(len(bad), 'request')} failed after {what} (at {seconds(t - since)} into the"
        f" load): first {describe(bad[0], since)}" + (f", last {describe(bad[-1], since)}" if len(bad) > 1 else "")
    )
