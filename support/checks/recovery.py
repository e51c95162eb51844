"""Recovery: when the service recovered after a fault, and the outage it showed meanwhile.

The rule itself is :class:`support.load.recovery.RecoveryRule` (the load worker
applies the same one live); this module applies it to a whole history and adds
the outage window. Times are ``time.monotonic()`` seconds, durations seconds; a
request is placed in time by its ``start`` and is non-ok when its outcome is
``fail`` or ``info``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from support.checks.durability import lost_on_read, lost_reads_sentence, without_lost_reads
from support.checks.messages import NO_LOAD, origin, seconds
from support.checks.verdict import CheckFailed
from support.faults.timeline import FaultWindow
from support.load.history import OK, Request
from support.load.recovery import MIN_SPAN, MIN_SUCCESSES, RecoveryRule

__all__ = ["Recovery", "recovery", "recovery_after_faults", "recovery_of_the_rest", "check_recovered_within"]


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
        return "?" if t is None or self.origin is None else seconds(t - self.origin)

    def describe(self) -> str:
        """A predicate for a sentence whose subject is the service: "recovered after 0.2 s (...)",
        "never recovered: ...", "did not show recovery: ..." or "could not be judged: ..."."""
        rule = f"the rule needs {self.min_successes} successes over {seconds(self.min_span)} with no failure after them"
        if self.requests == 0:
            return NO_LOAD
        if self.reference is None:
            return f"could not be judged: the fault was never healed ({self.failures} failed requests since it began)"
        outage = (
            f"outage {seconds(self.outage)} from {self._at(self.outage_start)} to {self._at(self.outage_end)},"
            f" {self.failures} failed requests"
            if self.failures
            else "no failed requests"
        )
        if self.recovered:
            return f"recovered after {seconds(self.recovery_time or 0.0)} ({outage})"
        if self.last_failure is not None:
            return (
                f"never recovered: failing from {self._at(self.outage_start)} until the end of observation"
                f" at {self._at(self.observed_until)} ({self.failures} failed requests, the last at"
                f" {self._at(self.last_failure)}; {self.run_successes} successes over {seconds(self.run_span)}"
                f" after it; the fault was healed at {self._at(self.reference)}; {rule})"
            )
        return (
            f"did not show recovery: only {self.run_successes} successes over {seconds(self.run_span)} after"
            f" the fault was healed at {self._at(self.reference)}, before the end of observation at"
            f" {self._at(self.observed_until)} ({outage}; {rule})"
        )


def recovery(
    history: Sequence[Request],
    reference: float | None,
    min_successes: int = MIN_SUCCESSES,
    min_span: float = MIN_SPAN,
    since: float | None = None,
) -> Recovery:
    """When the service recovered after ``reference`` (monotonic s), by the recovery rule.

    The rule is :class:`support.load.recovery.RecoveryRule`'s: only requests
    that *started* at or after ``reference`` decide; the *last failure* is the
    latest start of a non-ok one; the *run* is every ok request started after
    it; the service *recovered* when the run has ``min_successes`` requests
    whose starts span ``min_span`` seconds, at the run's first start, or at
    ``reference`` when nothing failed after it (recovery time 0).
    ``recovery_time = recovered_at - reference`` seconds.

    The outage window counts from ``since`` (the fault's injection; default
    ``reference``): ``outage_start``/``outage_end`` are the first and last
    starts of non-ok requests that started at or after ``since``, and
    ``failures`` is how many there were. A ``reference`` of None (a fault
    never healed) never recovers.
    """
    since = reference if since is None else since
    outage = [r.start for r in history if since is not None and r.start >= since and r.outcome != OK]
    rule = None
    if reference is not None:
        rule = RecoveryRule(reference, min_successes, min_span)
        for r in history:
            rule.add(r.start, r.outcome == OK)
    return Recovery(
        reference=reference,
        since=since,
        recovered=rule is not None and rule.holds,
        recovered_at=rule.recovered_at if rule else None,
        outage_start=min(outage) if outage else None,
        outage_end=max(outage) if outage else None,
        failures=len(outage),
        last_failure=rule.last_failure if rule else None,
        run_successes=rule.successes if rule else 0,
        run_span=rule.span if rule else 0.0,
        min_successes=min_successes,
        min_span=min_span,
        requests=len(history),
        origin=origin(history) if history else None,
        observed_until=max(r.end for r in history) if history else None,
    )


def recovery_after_faults(
    history: Sequence[Request],
    windows: Sequence[FaultWindow],
    min_successes: int = MIN_SUCCESSES,
    min_span: float = MIN_SPAN,
) -> Recovery:
    """:func:`recovery` measured from the latest fault's recovery reference (its heal, or its
    injection for an instant fault), with the outage counted from the first injection.
    No windows: measured from the start of the load (a scenario without faults)."""
    if not windows:
        start = origin(history) if history else None
        return recovery(history, start, min_successes, min_span, since=start)
    references = [w.recovery_reference for w in windows]
    reference = None if any(r is None for r in references) else max(references)  # type: ignore[type-var]
    return recovery(history, reference, min_successes, min_span, since=min(w.injected for w in windows))


def check_recovered_within(
    recovery: Recovery | None, bound: float, what: str = "the API", history: Sequence[Request] | None = None
) -> None:
    """Fail unless ``recovery`` recovered with ``recovery_time <= bound`` seconds.

    Given the ``history`` it was measured on, a failure caused by reads of acknowledged writes
    answered 404 says so: those writes are lost (reads of them fail for ever), and the message gives
    the recovery the rest of the requests show.
    """
    if recovery is None or recovery.requests == 0:
        raise CheckFailed(NO_LOAD)
    if recovery.recovered and (recovery.recovery_time or 0.0) <= bound:
        return
    lost = lost_on_read(history) if history else []
    if lost and history:
        rest = recovery_of_the_rest(recovery, without_lost_reads(history, lost))
        within = rest.recovered and (rest.recovery_time or 0.0) <= bound
        raise CheckFailed(
            f"{lost_reads_sentence(lost, history)}; apart from the reads of {'it' if len(lost) == 1 else 'them'},"
            f" {what} {rest.describe()}" + (f", within the {bound:g} s asked for" if within else "")
        )
    if not recovery.recovered:
        raise CheckFailed(f"{what} {recovery.describe()}")
    raise CheckFailed(f"{what} did not recover within {bound:g} s: {recovery.describe()}")


def recovery_of_the_rest(measured: Recovery, history: Sequence[Request]) -> Recovery:
    """:func:`recovery` again with ``measured``'s reference, window start and rule, over ``history``."""
    return recovery(history, measured.reference, measured.min_successes, measured.min_span, since=measured.since)
