"""Error rates and the phases of a scenario: before, during and after the faults.

Times are ``time.monotonic()`` seconds, latencies seconds, rates fractions
(0..1) unless a name says percent. A request is placed in a phase by its
``start`` and is non-ok when its outcome is ``fail`` or ``info``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from support.checks.durability import lost_on_read, lost_reads_sentence
from support.checks.messages import describe, origin, require, seconds
from support.checks.verdict import CheckFailed
from support.faults.timeline import FaultWindow
from support.load.history import FAIL, INFO, OK, Request, percentile

__all__ = ["PHASES", "PhaseStats", "phases", "error_rate", "check_error_rate_below"]

PHASES = ("before", "fault", "recovery", "after")


@dataclass(frozen=True)
class PhaseStats:
    """Requests that started in ``[start, end)`` (monotonic s; None = unbounded).

    ``error_rate`` is the fraction (0..1) of them that were non-ok (0 for none);
    latencies are seconds, nearest-rank percentiles over all of them, failures
    included (a timeout's latency is the time it was given); None for none.
    """

    name: str
    start: float | None
    end: float | None
    count: int
    ok: int
    fail: int
    info: int
    error_rate: float
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, name: str, requests: Sequence[Request], start: float | None, end: float | None) -> PhaseStats:
        """The statistics of ``requests``, the members of the phase ``name`` from ``start`` to ``end``."""
        outcomes = Counter(r.outcome for r in requests)
        latencies = sorted(r.latency for r in requests)
        count = len(requests)
        return cls(
            name=name,
            start=start,
            end=end,
            count=count,
            ok=outcomes[OK],
            fail=outcomes[FAIL],
            info=outcomes[INFO],
            error_rate=(count - outcomes[OK]) / count if count else 0.0,
            p50=percentile(latencies, 50),
            p95=percentile(latencies, 95),
            p99=percentile(latencies, 99),
            max=latencies[-1] if latencies else None,
        )


def error_rate(history: Sequence[Request]) -> float:
    """Fraction (0..1) of the history's requests that were non-ok; 0 for an empty history."""
    return sum(r.outcome != OK for r in history) / len(history) if history else 0.0


def phases(
    history: Sequence[Request], windows: Sequence[FaultWindow], recovered_at: float | None
) -> dict[str, PhaseStats]:
    """Statistics per phase of the scenario, plus ``"overall"``.

    The phases split the history by request start at three boundaries:
    ``fault_start`` = the first injection, ``fault_end`` = the last heal (the
    end of an instant fault's action; never, if a fault was not healed) and
    ``recovery_end`` = ``recovered_at`` (never, if None) but not before
    ``fault_end``. ``before`` = [-inf, fault_start), ``fault`` =
    [fault_start, fault_end), ``recovery`` = [fault_end, recovery_end) and
    ``after`` = [recovery_end, +inf). Without windows every request is ``before``.
    """
    out: dict[str, PhaseStats] = {}
    if windows:
        fault_start = min(w.injected for w in windows)
        heals = [w.healed for w in windows]
        fault_end = math.inf if any(h is None for h in heals) else max(h for h in heals if h is not None)
        recovery_end = math.inf if recovered_at is None else max(recovered_at, fault_end)
        bounds = [-math.inf, fault_start, fault_end, recovery_end, math.inf]
    else:
        bounds = [-math.inf, math.inf, math.inf, math.inf, math.inf]
    for i, name in enumerate(PHASES):
        lo, hi = bounds[i], bounds[i + 1]
        members = [r for r in history if lo <= r.start < hi]
        out[name] = PhaseStats.of(name, members, None if math.isinf(lo) else lo, None if math.isinf(hi) else hi)
    out["overall"] = PhaseStats.of("overall", history, None, None)
    return out


def check_error_rate_below(history: Sequence[Request] | None, percent: float) -> None:
    """Fail unless the share of non-ok requests over the whole history is below ``percent`` %."""
    history = require(history)
    rate = error_rate(history) * 100
    if rate < percent:
        return
    outcomes = Counter(r.outcome for r in history)
    failed = sorted((r for r in history if r.outcome != OK), key=lambda r: r.start)
    since = origin(history)
    lost = lost_on_read(history)
    raise CheckFailed(
        f"the error rate was {rate:.2f}%, not below {percent:g}%: {len(failed)} of {len(history)} requests"
        f" failed ({outcomes[FAIL]} fail, {outcomes[INFO]} info) from {seconds(failed[0].start - since)} to"
        f" {seconds(failed[-1].start - since)} into the load; first {describe(failed[0], since)}, last"
        f" {describe(failed[-1], since)}" + (f"; {lost_reads_sentence(lost, history)}" if lost else "")
    )
