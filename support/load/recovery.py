"""The recovery rule, in one pure and incremental class: when a service that failed counts as recovered.

Why it lives in ``load`` (layer 6) and not beside the checkers in ``checks``
(layer 7): three places apply it and the lowest of them is in this package.
The load worker (:mod:`support.load.worker`) applies it live to each request as
it completes, so that the controller's :meth:`support.load.controller.LoadRun.finish`
can stop the load as soon as it holds; :func:`support.checks.recovery.recovery`
applies it to the whole history to judge the scenario. ``checks`` may import
``load``, not the other way round, so the rule sits here, next to the
:class:`support.load.history.Request` it reads. It takes no clock and does no
I/O: it is fed request starts (monotonic seconds) and whether they were ok, in
any order, and gives the same answer whatever the order.

The rule. Only requests that *started* at or after ``reference`` (the fault's
heal, or its act for an instant fault) count: a request launched while the
fault was still held does not, even if it ended after it. A request is ok when
its outcome is ``ok`` (``fail`` and ``info`` are not). The *last failure* is the
latest start of a non-ok request among those; the *run* is every ok request that
started after it (after ``reference`` if there is none), so nothing non-ok
follows the run. The service has *recovered* when the run has at least
``min_successes`` requests whose starts span at least ``min_span`` seconds
(first to last start); it recovered at the start of the run's first request, or
at ``reference`` itself when no request failed after it (recovery time 0).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RecoveryRule", "MIN_SUCCESSES", "MIN_SPAN"]

#: the rule's defaults: ok requests in the run, and seconds their starts must span
MIN_SUCCESSES = 5
MIN_SPAN = 0.5


class RecoveryRule:
    """The recovery rule (see the module docstring) over the requests fed to :meth:`add` so far."""

    __slots__ = ("reference", "min_successes", "min_span", "failures", "last_failure", "_run")

    def __init__(self, reference: float, min_successes: int = MIN_SUCCESSES, min_span: float = MIN_SPAN) -> None:
        self.reference = reference
        self.min_successes = min_successes
        self.min_span = min_span
        #: non-ok requests started at or after ``reference``, and the latest start among them (monotonic s)
        self.failures = 0
        self.last_failure: float | None = None
        self._run: list[float] = []  # starts of the ok requests after the last failure, in arrival order

    def add(self, start: float, ok: bool) -> None:
        """Count one completed request that started at monotonic ``start``; ``ok`` when its outcome is ``ok``."""
        if start < self.reference:
            return
        last = self.last_failure
        if ok:
            if last is None or start > last:
                self._run.append(start)
            return
        self.failures += 1
        if last is None or start > last:
            self.last_failure = start
            self._run = [s for s in self._run if s > start]

    @property
    def successes(self) -> int:
        """How many ok requests the run holds."""
        return len(self._run)

    @property
    def first_ok(self) -> float | None:
        """The start of the run's first request (monotonic s), None for an empty run."""
        return min(self._run) if self._run else None

    @property
    def last_ok(self) -> float | None:
        """The start of the run's last request (monotonic s), None for an empty run."""
        return max(self._run) if self._run else None

    @property
    def span(self) -> float:
        """Seconds from the run's first start to its last; 0 for an empty run."""
        return (max(self._run) - min(self._run)) if self._run else 0.0

    @property
    def holds(self) -> bool:
        """True once the run is long enough: ``min_successes`` requests over ``min_span`` seconds."""
        return len(self._run) >= self.min_successes and self.span >= self.min_span

    @property
    def recovered_at(self) -> float | None:
        """When the service recovered (monotonic s) while the rule holds, else None."""
        if not self.holds:
            return None
        return self.reference if self.last_failure is None else self.first_ok

    def figures(self) -> dict[str, Any]:
        """The rule's state as JSON-able figures (what the worker reports to the controller)."""
        return {
            "after": self.reference,
            "last_bad": self.last_failure,
            "bad": self.failures,
            "oks": len(self._run),
            "first_ok": self.first_ok,
            "last_ok": self.last_ok,
            "recovered": self.holds,
        }
