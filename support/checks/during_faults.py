"""Judgements over the load's history *while a fault lasts*: reads against writes, and answer times.

Times are ``time.monotonic()`` seconds, durations seconds; messages give times
as seconds into the load, as :mod:`support.checks.checkers` does. A request *overlaps*
a window when it started before the window's end and ended after its start;
it is *inside* when it started at or after the start and ended at or before
the end.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from support.checks.checkers import NO_LOAD, slow_requests
from support.faults.ledger import FaultLedger
from support.load.history import OK, Request
from support.checks.verdict import CheckFailed

__all__ = ["EffectWindow", "effect_window", "fault_over", "fault_span", "ReadWriteSplit", "read_write_split",
           "check_writes_refused_reads_served", "check_answers_within_during_faults"]

_LIST_AT_MOST = 3


@dataclass(frozen=True)
class EffectWindow:
    """When the last fault's effect was certain: from ``start`` (its ``inject()`` had made it take
    effect) to ``end`` (its ``heal()`` began; ``inf`` while not healed), monotonic s. ``injected``
    and ``healed`` are the ledger's bounds of the same fault (before ``inject()``, after ``heal()``)."""

    name: str
    start: float
    end: float
    injected: float
    healed: float


def effect_window(ledger: FaultLedger) -> EffectWindow:
    """The effect window of the ledger's last fault.

    A fault that records ``active_since``/``active_until`` (the database faults)
    gives them; any other fault gives its ledger window, which is wider (it
    includes the time ``inject()`` and ``heal()`` took).
    """
    if not ledger.entries:
        raise CheckFailed("no fault was injected in this scenario, so there is no fault window to judge")
    entry = ledger.entries[-1]
    healed = math.inf if entry.healed is None else entry.healed
    start = getattr(entry.fault, "active_since", None)
    end = getattr(entry.fault, "active_until", None)
    if start is None:
        start = entry.injected
    if end is None:
        end = healed
    return EffectWindow(entry.fault.name, start, end, entry.injected, healed)


def fault_over(ledger: FaultLedger) -> float:
    """When the last fault stopped acting, monotonic s: for an instant fault, the moment its act
    was done (``active_since`` when it records one, else when ``inject()`` returned); for a held
    fault, when ``heal()`` returned (``inf`` if it was not healed)."""
    if not ledger.entries:
        raise CheckFailed("no fault was injected in this scenario, so there is no fault window to judge")
    entry = ledger.entries[-1]
    if entry.fault.instant and getattr(entry.fault, "active_since", None) is not None:
        return entry.fault.active_since
    return math.inf if entry.healed is None else entry.healed


def fault_span(ledger: FaultLedger) -> tuple[float, float]:
    """From the first injection to the last heal (``inf`` if a fault is not healed), monotonic s."""
    windows = ledger.windows()
    if not windows:
        raise CheckFailed("no fault was injected in this scenario, so there is no fault window to judge")
    heals = [w.healed for w in windows]
    end = math.inf if any(h is None for h in heals) else max(h for h in heals if h is not None)
    return min(w.injected for w in windows), end


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s" if abs(seconds) >= 1 else f"{seconds:.3f} s"


def _describe(r: Request, origin: float) -> str:
    answer = f"status {r.status}" if r.status is not None else "no answer"
    error = f", {r.error}" if r.error else ""
    return f"{r.op} {r.key} at {_s(r.start - origin)} ({answer}{error}, {_s(r.latency)})"


@dataclass(frozen=True)
class ReadWriteSplit:
    """The requests of a window sorted by what they were expected to get (see :func:`read_write_split`)."""

    writes_inside: int
    reads_overlapping: int
    writes_not_refused: list[Request]
    writes_wrongly_answered: list[Request]
    reads_failed: list[Request]

    @property
    def ok(self) -> bool:
        return not (self.writes_not_refused or self.writes_wrongly_answered or self.reads_failed)


def read_write_split(history: Sequence[Request], start: float, end: float, status: int = 503) -> ReadWriteSplit:
    """Sort the requests around the window ``[start, end]`` by this rule.

    * A write *inside* the window must be answered ``status`` (the database
      refuses writes for all of it); ``writes_not_refused`` lists those that
      were not (acknowledged, another status, or no answer).
    * A write that only *overlaps* the window (it started before the fault
      took effect, or ended after the heal began) may have been served either
      way: it must be ok or answered ``status``; ``writes_wrongly_answered``
      lists those that were neither.
    * Every read that overlaps the window must be ok (``reads_failed``).
    """
    writes_inside = reads = 0
    not_refused: list[Request] = []
    wrong: list[Request] = []
    reads_failed: list[Request] = []
    for r in history:
        if not (r.start < end and r.end > start):
            continue
        if r.op == "write":
            if r.start >= start and r.end <= end:
                writes_inside += 1
                if r.status != status:
                    not_refused.append(r)
            elif r.outcome != OK and r.status != status:
                wrong.append(r)
        else:
            reads += 1
            if r.outcome != OK:
                reads_failed.append(r)
    return ReadWriteSplit(writes_inside, reads, not_refused, wrong, reads_failed)


def _listing(requests: list[Request], origin: float) -> str:
    shown = "; ".join(_describe(r, origin) for r in requests[:_LIST_AT_MOST])
    more = f" and {len(requests) - _LIST_AT_MOST} more" if len(requests) > _LIST_AT_MOST else ""
    counts = Counter(r.status if r.status is not None else (r.error or "no answer") for r in requests)
    return f"{len(requests)} ({', '.join(f'{k} x{n}' for k, n in counts.most_common())}): {shown}{more}"


def check_writes_refused_reads_served(history: Sequence[Request] | None, window: EffectWindow,
                                      status: int = 503) -> None:
    """Fail unless, by :func:`read_write_split`, every write inside the window got ``status``, every
    write overlapping it got ``ok`` or ``status``, and every read overlapping it was ok.

    Fails too when no write fell inside the window or no read overlapped it: the
    property was then not exercised.
    """
    if not history:
        raise CheckFailed(NO_LOAD)
    origin = min(r.start for r in history)
    split = read_write_split(history, window.start, window.end, status)
    where = (f"the {window.name} fault took effect at {_s(window.start - origin)} and"
             + (" was never healed" if math.isinf(window.end) else f" its heal began at {_s(window.end - origin)}"))
    if split.writes_inside == 0 or split.reads_overlapping == 0:
        raise CheckFailed(f"the fault window held {split.writes_inside} writes and {split.reads_overlapping} reads,"
                          f" too few to judge whether writes fail with {status} while reads work ({where};"
                          " hold the fault longer or raise the load)")
    problems = []
    if split.writes_not_refused:
        problems.append(f"writes inside the window not answered {status}: "
                        + _listing(split.writes_not_refused, origin))
    if split.writes_wrongly_answered:
        problems.append(f"writes at the window's edges neither ok nor {status}: "
                        + _listing(split.writes_wrongly_answered, origin))
    if split.reads_failed:
        problems.append("reads that failed: " + _listing(split.reads_failed, origin))
    if problems:
        raise CheckFailed(f"writes did not fail with {status} while reads kept working ({where};"
                          f" {split.writes_inside} writes inside, {split.reads_overlapping} reads overlapping): "
                          + "; ".join(problems))


def check_answers_within_during_faults(history: Sequence[Request] | None, span: tuple[float, float],
                                       seconds: float) -> None:
    """Fail if a request that started in ``span`` (first injection to last heal, monotonic s) took longer
    than ``seconds`` or timed out (its real latency is unknown, so it is not under any bound)."""
    if not history:
        raise CheckFailed(NO_LOAD)
    start, end = span
    during = [r for r in history if start <= r.start < end]
    if not during:
        raise CheckFailed("no request of the load started while the fault lasted: nothing to judge"
                          " (hold the fault longer or raise the load)")
    slow = slow_requests(during, seconds)
    if not slow:
        return
    origin = min(r.start for r in history)
    timeouts = sum(r.error in ("timeout", "connect timeout") for r in slow)
    worst = sorted(slow, key=lambda r: r.latency, reverse=True)[:_LIST_AT_MOST]
    raise CheckFailed(
        f"{len(slow)} of the {len(during)} requests started while the fault lasted ({_s(start - origin)} to"
        f" {'the end' if math.isinf(end) else _s(end - origin)}) took longer than {seconds:g} s ({timeouts} timed"
        f" out); slowest: " + "; ".join(_describe(r, origin) for r in worst))
