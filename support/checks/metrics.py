"""The scenario's figures for the evidence: every measure of the checkers as plain JSON-able numbers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from support.checks.durability import Durability
from support.checks.error_rates import error_rate, phases
from support.checks.latency import longest_silence
from support.checks.messages import origin
from support.checks.recovery import Recovery
from support.faults.timeline import FaultWindow
from support.load.history import FAIL, INFO, OK, Request, percentile

__all__ = ["metrics"]


def _num(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def metrics(
    history: Sequence[Request],
    windows: Sequence[FaultWindow],
    recovery: Recovery | None,
    durability: Durability | None = None,
) -> dict[str, Any]:
    """The scenario's figures as plain JSON-able numbers.

    Times (``*_at``, ``*_start``, ``*_end``) are seconds into the load (from
    the first request's start); durations and latencies seconds; rates percent.
    """
    start = origin(history) if history else 0.0

    def rel(t: float | None) -> float | None:
        return None if t is None else _num(t - start)

    overall = Counter(r.outcome for r in history)
    duration = (max(r.end for r in history) - start) if history else 0.0
    lags = [r.lag for r in history]
    out: dict[str, Any] = {
        "requests": len(history),
        "ok": overall[OK],
        "fail": overall[FAIL],
        "info": overall[INFO],
        "writes": sum(r.op == "write" for r in history),
        "reads": sum(r.op == "read" for r in history),
        "error_rate_percent": _num(error_rate(history) * 100, 3),
        "duration_s": _num(duration),
        "throughput_rps": _num(len(history) / duration if duration > 0 else 0.0, 2),
        "lag_p99_s": _num(percentile(lags, 99)),
        "lag_max_s": _num(max(lags) if lags else None),
        "faults": [
            {
                "name": w.name,
                "target": w.target,
                "injected_at": rel(w.injected),
                "healed_at": rel(w.healed),
                "instant": w.instant,
            }
            for w in windows
        ],
    }
    if windows and history:
        silence = longest_silence(history, min(w.injected for w in windows))
        out["longest_silence"] = {
            "seconds": _num(silence.seconds),
            "after_answer_at": rel(silence.after),
            "next_answer_at": rel(silence.before),
        }
    if recovery is not None:
        out["recovery"] = {
            "recovered": recovery.recovered,
            "recovery_time_s": _num(recovery.recovery_time),
            "reference_at": rel(recovery.reference),
            "recovered_at": rel(recovery.recovered_at),
            "outage_s": _num(recovery.outage),
            "outage_start_at": rel(recovery.outage_start),
            "outage_end_at": rel(recovery.outage_end),
            "failures": recovery.failures,
            "rule": {"min_successes": recovery.min_successes, "min_span_s": recovery.min_span},
            "summary": recovery.describe(),
        }
    recovered_at = recovery.recovered_at if recovery is not None else None
    out["phases"] = {
        name: {
            "start_at": rel(p.start),
            "end_at": rel(p.end),
            "count": p.count,
            "ok": p.ok,
            "fail": p.fail,
            "info": p.info,
            "error_rate_percent": _num(p.error_rate * 100, 3),
            "latency_p50_s": _num(p.p50),
            "latency_p95_s": _num(p.p95),
            "latency_p99_s": _num(p.p99),
            "latency_max_s": _num(p.max),
        }
        for name, p in phases(history, windows, recovered_at).items()
    }
    if durability is not None:
        out["durability"] = {
            "acknowledged": durability.acknowledged,
            "lost": len(durability.lost),
            "lost_keys": durability.lost[:50],
            "changed": len(durability.changed),
            "changed_keys": durability.changed[:50],
            "info_present": durability.info_present,
            "info_absent": durability.info_absent,
            "fail_present": len(durability.fail_present),
            "fail_present_keys": durability.fail_present[:50],
        }
    return out
