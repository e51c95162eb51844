"""Checkers: pure judgements over a load's history and the fault timeline.

Every time is ``time.monotonic()`` seconds (the clock of the history and of the
fault windows); every duration and latency is in seconds; rates are fractions
(0..1) unless a name says percent. A request *is non-ok* when its outcome is
``fail`` or ``info``. Requests are placed in time by their ``start``. Messages
give times as seconds into the load (from the first request's start), since
monotonic readings mean nothing to a reader.

The ``check_*`` functions raise :class:`CheckFailed` with one message that
names the broken property and the figures that broke it; the others only
compute.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from support.load.history import FAIL, INFO, OK, Request
from support.faults.timeline import FaultWindow
from support.checks.verdict import CheckFailed  # the suite's one failure type, an AssertionError

__all__ = [
    "CheckFailed", "NO_LOAD", "Recovery", "PhaseStats", "Durability", "Not503",
    "recovery", "recovery_after_faults", "phases", "error_rate", "percentile", "durability",
    "written_keys", "slow_requests", "failures_not_503", "failures_after", "metrics", "Silence", "longest_silence",
    "check_recovered_within", "check_no_lost_writes", "check_error_rate_below",
    "check_no_request_slower_than", "check_failures_are_503", "check_no_failures_after",
]

NO_LOAD = "no load ran in this scenario: add a 'Given ... load' step before the steps that judge it"
PHASES = ("before", "fault", "recovery", "after")
_LIST_AT_MOST = 10


# -- helpers -------------------------------------------------------------------

def _require(history: Sequence[Request] | None) -> Sequence[Request]:
    if not history:
        raise CheckFailed(NO_LOAD)
    return history


def _origin(history: Sequence[Request]) -> float:
    return min(r.start for r in history)


def _s(seconds: float) -> str:
    """Seconds for a message: one decimal from 1 s up, milliseconds' precision below."""
    return f"{seconds:.1f} s" if abs(seconds) >= 1 else f"{seconds:.3f} s"


def _keys(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    return shown + (f" and {len(keys) - _LIST_AT_MOST} more" if len(keys) > _LIST_AT_MOST else "")


def _describe(r: Request, origin: float) -> str:
    answer = f"status {r.status}" if r.status is not None else "no answer"
    error = f", {r.error}" if r.error else ""
    return f"{r.op} {r.key} at {_s(r.start - origin)} ({answer}{error}, {_s(r.latency)})"


def percentile(values: Iterable[float], p: float) -> float | None:
    """The ``p``-th percentile (0 < p <= 100) by nearest rank: the smallest value with at
    least ``p`` % of the values at or below it; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _is_timeout(r: Request) -> bool:
    return r.error in ("timeout", "connect timeout")


# -- recovery -----------------------------------------------------------------

@dataclass(frozen=True)
class Recovery:
    """The recovery of one scenario; see :func:`recovery` for the definitions.

    Times are monotonic seconds, durations seconds. ``origin`` is the first
    request's start (messages count from it), ``observed_until`` the last
    request's end. ``run_successes``/``run_span`` describe the run of ok
    requests after the last failure (the candidate run even when it is too short).
    """

    reference: float | None
    since: float | None
    recovered: bool
    recovered_at: float | None
    outage_start: float | None
    outage_end: float | None
    failures: int
    last_failure: float | None
    run_successes: int
    run_span: float
    min_successes: int
    min_span: float
    requests: int
    origin: float | None
    observed_until: float | None

    @property
    def recovery_time(self) -> float | None:
        """Seconds from ``reference`` to ``recovered_at``; None if it never recovered."""
        if self.recovered_at is None or self.reference is None:
            return None
        return self.recovered_at - self.reference

    @property
    def outage(self) -> float:
        """Seconds from the first to the last non-ok request start since the fault; 0 without any."""
        if self.outage_start is None or self.outage_end is None:
            return 0.0
        return self.outage_end - self.outage_start

    def _at(self, t: float | None) -> str:
        return "?" if t is None or self.origin is None else _s(t - self.origin)

    def describe(self) -> str:
        """A predicate for a sentence whose subject is the service: "recovered after 0.2 s (...)",
        "never recovered: ...", "did not show recovery: ..." or "could not be judged: ..."."""
        rule = (f"the rule needs {self.min_successes} successes over {_s(self.min_span)}"
                f" with no failure after them")
        if self.requests == 0:
            return NO_LOAD
        if self.reference is None:
            return f"could not be judged: the fault was never healed ({self.failures} failed requests since it began)"
        outage = (f"outage {_s(self.outage)} from {self._at(self.outage_start)} to {self._at(self.outage_end)},"
                  f" {self.failures} failed requests" if self.failures else "no failed requests")
        if self.recovered:
            return f"recovered after {_s(self.recovery_time or 0.0)} ({outage})"
        if self.last_failure is not None:
            return (f"never recovered: failing from {self._at(self.outage_start)} until the end of observation"
                    f" at {self._at(self.observed_until)} ({self.failures} failed requests, the last at"
                    f" {self._at(self.last_failure)}; {self.run_successes} successes over {_s(self.run_span)}"
                    f" after it; the fault was healed at {self._at(self.reference)}; {rule})")
        return (f"did not show recovery: only {self.run_successes} successes over {_s(self.run_span)} after the"
                f" fault was healed at {self._at(self.reference)}, before the end of observation at"
                f" {self._at(self.observed_until)} ({outage}; {rule})")


def recovery(history: Sequence[Request], reference: float | None, min_successes: int = 5,
             min_span: float = 0.5, since: float | None = None) -> Recovery:
    """When the service recovered after ``reference`` (monotonic s), by this rule.

    Only requests that *started* at or after ``reference`` decide recovery: a
    request launched while the fault was still held (started before
    ``reference``) does not count, even if it ended after it. Among those, let
    the *last failure* be the latest start of a non-ok request. The *run* is
    every ok request that started after the last failure (after ``reference``
    if there is none); by construction nothing non-ok follows it. The service
    *recovered* when the run has at least ``min_successes`` requests whose
    starts span at least ``min_span`` seconds (first to last start);
    ``recovered_at`` is then the start of the run's first request, or
    ``reference`` itself when no request failed after ``reference`` (recovery
    time 0). ``recovery_time = recovered_at - reference`` seconds.

    The outage window counts from ``since`` (the fault's injection; default
    ``reference``): ``outage_start``/``outage_end`` are the first and last
    starts of non-ok requests that started at or after ``since``, and
    ``failures`` is how many there were. A ``reference`` of None (a fault
    never healed) never recovers.
    """
    since = reference if since is None else since
    origin = _origin(history) if history else None
    observed_until = max(r.end for r in history) if history else None
    outage = [r.start for r in history if since is not None and r.start >= since and r.outcome != OK]
    last_failure: float | None = None
    run: list[float] = []
    if reference is not None:
        after = [r for r in history if r.start >= reference]
        bad = [r.start for r in after if r.outcome != OK]
        last_failure = max(bad) if bad else None
        run = [r.start for r in after if r.outcome == OK and (last_failure is None or r.start > last_failure)]
    span = (max(run) - min(run)) if run else 0.0
    recovered = reference is not None and len(run) >= min_successes and span >= min_span
    recovered_at = None
    if recovered:
        recovered_at = reference if last_failure is None else min(run)
    return Recovery(
        reference=reference, since=since, recovered=recovered, recovered_at=recovered_at,
        outage_start=min(outage) if outage else None, outage_end=max(outage) if outage else None,
        failures=len(outage), last_failure=last_failure, run_successes=len(run), run_span=span,
        min_successes=min_successes, min_span=min_span, requests=len(history), origin=origin,
        observed_until=observed_until,
    )


def recovery_after_faults(history: Sequence[Request], windows: Sequence[FaultWindow], min_successes: int = 5,
                          min_span: float = 0.5) -> Recovery:
    """:func:`recovery` measured from the latest fault's recovery reference (its heal, or its
    injection for an instant fault), with the outage counted from the first injection.
    No windows: measured from the start of the load (a scenario without faults)."""
    if not windows:
        start = _origin(history) if history else None
        return recovery(history, start, min_successes, min_span, since=start)
    references = [w.recovery_reference for w in windows]
    reference = None if any(r is None for r in references) else max(references)  # type: ignore[type-var]
    return recovery(history, reference, min_successes, min_span, since=min(w.injected for w in windows))


def check_recovered_within(recovery: Recovery | None, bound: float, what: str = "the API") -> None:
    """Fail unless ``recovery`` recovered with ``recovery_time <= bound`` seconds."""
    if recovery is None or recovery.requests == 0:
        raise CheckFailed(NO_LOAD)
    if not recovery.recovered:
        raise CheckFailed(f"{what} {recovery.describe()}")
    if (recovery.recovery_time or 0.0) > bound:
        raise CheckFailed(f"{what} did not recover within {bound:g} s: {recovery.describe()}")


# -- phases and error rates ------------------------------------------------------

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
    def of(cls, name: str, requests: Sequence[Request], start: float | None, end: float | None) -> "PhaseStats":
        outcomes = Counter(r.outcome for r in requests)
        latencies = sorted(r.latency for r in requests)
        count = len(requests)
        return cls(
            name=name, start=start, end=end, count=count, ok=outcomes[OK], fail=outcomes[FAIL],
            info=outcomes[INFO], error_rate=(count - outcomes[OK]) / count if count else 0.0,
            p50=percentile(latencies, 50), p95=percentile(latencies, 95), p99=percentile(latencies, 99),
            max=latencies[-1] if latencies else None,
        )


def error_rate(history: Sequence[Request]) -> float:
    """Fraction (0..1) of the history's requests that were non-ok; 0 for an empty history."""
    return sum(r.outcome != OK for r in history) / len(history) if history else 0.0


def phases(history: Sequence[Request], windows: Sequence[FaultWindow],
           recovered_at: float | None) -> dict[str, PhaseStats]:
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
    history = _require(history)
    rate = error_rate(history) * 100
    if rate < percent:
        return
    outcomes = Counter(r.outcome for r in history)
    bad = outcomes[FAIL] + outcomes[INFO]
    raise CheckFailed(
        f"the error rate was {rate:.2f}%, not below {percent:g}%: {bad} of {len(history)} requests"
        f" failed ({outcomes[FAIL]} fail, {outcomes[INFO]} info)")


# -- durability -------------------------------------------------------------------

@dataclass(frozen=True)
class Durability:
    """What became of the history's writes once read back from the database.

    ``acknowledged`` counts keys written with an ``ok`` answer; ``lost`` and
    ``changed`` list those missing or with other content (violations);
    ``info_present``/``info_absent`` count keys whose writes all had an
    unknown (``info``) outcome and that exist / do not exist (either is
    allowed); ``fail_present`` lists keys whose writes were all answered as not
    applied and that exist anyway (a violation).
    """

    acknowledged: int
    lost: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    info_present: int = 0
    info_absent: int = 0
    fail_present: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no acknowledged write is lost or changed and no refused write appeared."""
        return not (self.lost or self.changed or self.fail_present)


def written_keys(history: Sequence[Request]) -> list[str]:
    """The keys (emails) of every write the history attempted, whatever its outcome, in order."""
    return list(dict.fromkeys(r.key for r in history if r.op == "write"))


def durability(history: Sequence[Request], rows: Mapping[str, Sequence[str]]) -> Durability:
    """Compare the history's writes with ``rows``: key -> the compared columns as read back by SQL.

    A key's writes are judged together: any ``ok`` write makes it acknowledged,
    and its stored content must equal the compared fields of its last ``ok``
    write (``Request.body``: the workload's ``compare`` values, tab-separated); otherwise any ``info`` write makes it unknown; otherwise
    (only ``fail`` writes) it must be absent. Rows for keys the history never
    wrote are ignored (the caller selects the rows).
    """
    by_key: dict[str, list[Request]] = {}
    for r in history:
        if r.op == "write":
            by_key.setdefault(r.key, []).append(r)
    acknowledged = 0
    lost: list[str] = []
    changed: list[str] = []
    fail_present: list[str] = []
    info_present = info_absent = 0
    for key, writes in by_key.items():
        oks = [w for w in writes if w.outcome == OK]
        present = key in rows
        if oks:
            acknowledged += 1
            expected = tuple(max(oks, key=lambda w: w.start).body.split("\t"))
            if not present:
                lost.append(key)
            elif tuple(rows[key]) != expected:
                changed.append(key)
        elif any(w.outcome == INFO for w in writes):
            if present:
                info_present += 1
            else:
                info_absent += 1
        elif present:
            fail_present.append(key)
    return Durability(acknowledged=acknowledged, lost=lost, changed=changed, info_present=info_present,
                      info_absent=info_absent, fail_present=fail_present)


def check_no_lost_writes(durability: Durability | None) -> None:
    """Fail if an acknowledged write is missing or changed, or a write answered as not applied exists."""
    if durability is None:
        raise CheckFailed(NO_LOAD)
    problems = []
    if durability.lost:
        n = len(durability.lost)
        problems.append(f"{n} acknowledged write{'s' if n != 1 else ''} lost: {_keys(durability.lost)}")
    if durability.changed:
        n = len(durability.changed)
        problems.append(f"{n} acknowledged write{'s' if n != 1 else ''} changed: {_keys(durability.changed)}")
    if durability.fail_present:
        n = len(durability.fail_present)
        problems.append(f"{n} write{'s' if n != 1 else ''} answered as not applied exist anyway:"
                        f" {_keys(durability.fail_present)}")
    if problems:
        raise CheckFailed("; ".join(problems) + f" (of {durability.acknowledged} acknowledged writes;"
                          f" unknown writes: {durability.info_present} present, {durability.info_absent} absent)")


# -- slowness and the kind of failures -------------------------------------------------

def slow_requests(history: Sequence[Request], bound: float) -> list[Request]:
    """Requests whose latency exceeds ``bound`` seconds, plus every request that hit the client
    timeout (its real latency is unknown, so it is not proven under any bound), by start."""
    return [r for r in history if r.latency > bound or _is_timeout(r)]


def check_no_request_slower_than(history: Sequence[Request] | None, seconds: float) -> None:
    """Fail if any request took longer than ``seconds`` or timed out."""
    history = _require(history)
    slow = slow_requests(history, seconds)
    if not slow:
        return
    origin = _origin(history)
    timeouts = sum(_is_timeout(r) for r in slow)
    worst = sorted(slow, key=lambda r: r.latency, reverse=True)[:3]
    raise CheckFailed(
        f"{len(slow)} request{'s' if len(slow) != 1 else ''} took longer than {seconds:g} s"
        f" ({timeouts} timed out); slowest: " + "; ".join(_describe(r, origin) for r in worst))


@dataclass(frozen=True)
class Silence:
    """The longest stretch without any answer: between the answers (request ends) at ``after`` and ``before``."""

    after: float | None
    before: float | None

    @property
    def seconds(self) -> float:
        return 0.0 if self.after is None or self.before is None else self.before - self.after


def longest_silence(history: Sequence[Request], since: float, until: float | None = None) -> Silence:
    """The longest time the service answered nothing, from the last answer before ``since`` to ``until``.

    An answer is the end of a request that got an HTTP status (any status: a
    503 is an answer; a client timeout or a refused connect is not). This is how
    a freeze shows when requests wait instead of failing, which the outage
    window of :func:`recovery` cannot see. ``until`` defaults to the last answer.
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
    history = _require(history)
    found = failures_not_503(history)
    transport = [] if allow_transport_errors else found.transport
    if not found.statuses and not transport:
        return
    parts = []
    if found.statuses:
        counts = Counter(r.status for r in found.statuses)
        parts.append(f"{len(found.statuses)} with another status ("
                     + ", ".join(f"{s} x{n}" for s, n in counts.most_common()) + ")")
    if transport:
        counts = Counter(r.error or "no answer" for r in transport)
        parts.append(f"{len(transport)} with no answer ("
                     + ", ".join(f"{e} x{n}" for e, n in counts.most_common(5)) + ")")
    total = len(found.statuses) + len(transport)
    first = min(found.statuses + transport, key=lambda r: r.start)
    raise CheckFailed(f"{total} failed request{'s' if total != 1 else ''} not answered with 503: "
                      + "; ".join(parts) + f"; first: {_describe(first, _origin(history))}")


def failures_after(history: Sequence[Request], t: float) -> list[Request]:
    """Non-ok requests that started at or after monotonic ``t``."""
    return [r for r in history if r.start >= t and r.outcome != OK]


def check_no_failures_after(history: Sequence[Request] | None, t: float, what: str) -> None:
    """Fail if a request that started at or after ``t`` (the moment ``what`` describes) was non-ok."""
    history = _require(history)
    bad = failures_after(history, t)
    if not bad:
        return
    origin = _origin(history)
    bad.sort(key=lambda r: r.start)
    raise CheckFailed(
        f"{len(bad)} request{'s' if len(bad) != 1 else ''} failed after {what} (at {_s(t - origin)} into the"
        f" load): first {_describe(bad[0], origin)}" + (f", last {_describe(bad[-1], origin)}" if len(bad) > 1 else ""))


# -- the figures for the evidence ------------------------------------------------------

def _num(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def metrics(history: Sequence[Request], windows: Sequence[FaultWindow], recovery: Recovery | None,
            durability: Durability | None = None) -> dict[str, Any]:
    """The scenario's figures as plain JSON-able numbers.

    Times (``*_at``, ``*_start``, ``*_end``) are seconds into the load (from
    the first request's start); durations and latencies seconds; rates percent.
    """
    origin = _origin(history) if history else 0.0

    def rel(t: float | None) -> float | None:
        return None if t is None else _num(t - origin)

    overall = Counter(r.outcome for r in history)
    duration = (max(r.end for r in history) - origin) if history else 0.0
    lags = [r.lag for r in history]
    out: dict[str, Any] = {
        "requests": len(history), "ok": overall[OK], "fail": overall[FAIL], "info": overall[INFO],
        "writes": sum(r.op == "write" for r in history), "reads": sum(r.op == "read" for r in history),
        "error_rate_percent": _num(error_rate(history) * 100, 3),
        "duration_s": _num(duration), "throughput_rps": _num(len(history) / duration if duration > 0 else 0.0, 2),
        "lag_p99_s": _num(percentile(lags, 99)), "lag_max_s": _num(max(lags) if lags else None),
        "faults": [{"name": w.name, "target": w.target, "injected_at": rel(w.injected), "healed_at": rel(w.healed),
                    "instant": w.instant} for w in windows],
    }
    if windows and history:
        silence = longest_silence(history, min(w.injected for w in windows))
        out["longest_silence"] = {"seconds": _num(silence.seconds), "after_answer_at": rel(silence.after),
                                  "next_answer_at": rel(silence.before)}
    if recovery is not None:
        out["recovery"] = {
            "recovered": recovery.recovered, "recovery_time_s": _num(recovery.recovery_time),
            "reference_at": rel(recovery.reference), "recovered_at": rel(recovery.recovered_at),
            "outage_s": _num(recovery.outage), "outage_start_at": rel(recovery.outage_start),
            "outage_end_at": rel(recovery.outage_end), "failures": recovery.failures,
            "rule": {"min_successes": recovery.min_successes, "min_span_s": recovery.min_span},
            "summary": recovery.describe(),
        }
    recovered_at = recovery.recovered_at if recovery is not None else None
    out["phases"] = {
        name: {"start_at": rel(p.start), "end_at": rel(p.end), "count": p.count, "ok": p.ok, "fail": p.fail,
               "info": p.info, "error_rate_percent": _num(p.error_rate * 100, 3), "latency_p50_s": _num(p.p50),
               "latency_p95_s": _num(p.p95), "latency_p99_s": _num(p.p99), "latency_max_s": _num(p.max)}
        for name, p in phases(history, windows, recovered_at).items()
    }
    if durability is not None:
        out["durability"] = {
            "acknowledged": durability.acknowledged, "lost": len(durability.lost),
            "lost_keys": durability.lost[:50], "changed": len(durability.changed),
            "changed_keys": durability.changed[:50], "info_present": durability.info_present,
            "info_absent": durability.info_absent, "fail_present": len(durability.fail_present),
            "fail_present_keys": durability.fail_present[:50],
        }
    return out
