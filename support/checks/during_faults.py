"""Judgements over the load's history *while a fault lasts*: reads against writes, and answer times.

Times are ``time.monotonic()`` seconds, durations seconds; messages give times
as seconds into the load (:mod:`support.checks.messages`). A request *overlaps*
a window when it started before the window's end and ended after its start;
it is *inside* when it started at or after the start and ended at or before
the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from support.checks.latency import is_timeout, slow_requests
from support.checks.messages import REQUESTS_AT_MOST, describe, listing, no_fault, origin, require, seconds
from support.checks.verdict import CheckFailed
from support.faults.ledger import FaultLedger
from support.load.history import OK, Request

__all__ = [
    "EffectWindow",
    "effect_window",
    "fault_over",
    "fault_span",
    "ReadWriteSplit",
    "read_write_split",
    "check_writes_refused_reads_served",
    "check_answers_within_during_faults",
]

#: why a judgement over the fault window cannot run in a scenario without a fault
_NO_WINDOW = no_fault("no fault window to judge")


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
        raise CheckFailed(_NO_WINDOW)
    entry = ledger.entries[-1]
    healed = math.inf if entry.healed is None else entry.healed
    start, end = entry.fault.active_since, entry.fault.active_until
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
        raise CheckFailed(_NO_WINDOW)
    entry = ledger.entries[-1]
    if entry.fault.instant and entry.fault.active_since is not None:
        return entry.fault.active_since
    return math.inf if entry.healed is None else entry.healed


def fault_span(ledger: FaultLedger) -> tuple[float, float]:
    """From the first injection to the last heal (``inf`` if a fault is not healed), monotonic s."""
    windows = ledger.windows()
    if not windows:
        raise CheckFailed(_NO_WINDOW)
    heals = [w.healed for w in windows]
    end = math.inf if any(h is None for h in heals) else max(h for h in heals if h is not None)
    return min(w.injected for w in windows), end


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


def check_writes_refused_reads_served(
    history: Sequence[Request] | None, window: EffectWindow, status: int = 503
) -> None:
    """Fail unless, by :func:`read_write_split`, every write inside the window got ``status``, every
    write overlapping it got ``ok`` or ``status``, and every read overlapping it was ok.

    Fails too when no write fell inside the window or no read overlapped it: the
    property was then not exercised.
    """
    history = require(history)
    since = origin(history)
    split = read_write_split(history, window.start, window.end, status)
    where = f"the {window.name} fault took effect at {seconds(window.start - since)} and" + (
        " was never healed" if math.isinf(window.end) else f" its heal began at {seconds(window.end - since)}"
    )
    if split.writes_inside == 0 or split.reads_overlapping == 0:
        raise CheckFailed(
            f"the fault window held {split.writes_inside} writes and {split.reads_overlapping} reads,"
            f" too few to judge whether writes fail with {status} while reads work ({where};"
            " hold the fault longer or raise the load)"
        )
    problems = []
    if split.writes_not_refused:
        problems.append(f"writes inside the window not answered {status}: " + listing(split.writes_not_refused, since))
    if split.writes_wrongly_answered:
        problems.append(
            f"writes at the window's edges neither ok nor {status}: " + listing(split.writes_wrongly_answered, since)
        )
    if split.reads_failed:
        problems.append("reads that failed: " + listing(split.reads_failed, since))
    if problems:
        raise CheckFailed(
            f"writes did not fail with {status} while reads kept working ({where};"
            f" {split.writes_inside} writes inside, {split.reads_overlapping} reads overlapping): "
            + "; ".join(problems)
        )


def check_answers_within_during_faults(
    history: Sequence[Request] | None, span: tuple[float, float], bound: float
) -> None:
    """Fail if a request that started in ``span`` (first injection to last heal, monotonic s) took longer
    than ``bound`` seconds or timed out (its real latency is unknown, so it is not under any bound)."""
    history = require(history)
    start, end = span
    during = [r for r in history if start <= r.start < end]
    if not during:
        raise CheckFailed(
            "no request of the load started while the fault lasted: nothing to judge"
            " (hold the fault longer or raise the load)"
        )
    slow = slow_requests(during, bound)
    if not slow:
        return
    since = origin(history)
    timeouts = sum(is_timeout(r) for r in slow)
    worst = sorted(slow, key=lambda r: r.latency, reverse=True)[:REQUESTS_AT_MOST]
    raise CheckFailed(
        f"{len(slow)} of the {len(during)} requests started while the fault lasted ({seconds(start - since)} to"
        f" {'the end' if math.isinf(end) else seconds(end - since)}) took longer than {bound:g} s ({timeouts} timed"
        f" out); slowest: " + "; ".join(describe(r, since) for r in worst)
    )
