"""Repeated runs of one scenario: its measures as distributions, the share-of-runs recovery verdict, flakiness.

A scenario run N times on the same stack (``-D repeat=N`` or a ``@repeat.N`` tag) makes one
:class:`RepeatGroup`; each run adds a :class:`RunOutcome` when it ends. Durations are seconds,
rates percent; a distribution is min, p50, p95 and max by the suite's one percentile
(:func:`support.load.history.percentile`, nearest rank), over the runs that measured it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from support.checks.messages import plural, seconds
from support.checks.verdict import CheckFailed
from support.load.history import percentile

__all__ = ["RunOutcome", "Distribution", "RepeatGroup", "distribution", "check_share_recovered_within"]

#: the measures a group reports as distributions: (field of RunOutcome, label, unit)
MEASURES = (
    ("recovery_time_s", "recovery", "s"),
    ("outage_s", "outage", "s"),
    ("error_rate_percent", "errors", "%"),
    ("lost_writes", "lost writes", ""),
)


@dataclass(frozen=True)
class RunOutcome:
    """One run's verdict and measures: ``passed`` its verdict, ``recovered`` False when it never
    recovered (None: no recovery measured); seconds, percent, a count; None when not measured."""

    run: int
    passed: bool
    recovered: bool | None = None
    recovery_time_s: float | None = None
    outage_s: float | None = None
    error_rate_percent: float | None = None
    lost_writes: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Distribution:
    """min, p50, p95 and max of a measure over ``count`` runs (in the measure's unit)."""

    count: int
    min: float
    p50: float
    p95: float
    max: float

    def describe(self, unit: str) -> str:
        def cell(x: float) -> str:
            return f"{x:.3g}"

        suffix = f" {unit}" if unit and unit != "%" else unit
        values = (self.min, self.p50, self.p95, self.max)
        return "min {} p50 {} p95 {} max {}".format(*(cell(v) for v in values)) + suffix


def distribution(values: Sequence[float]) -> Distribution | None:
    """The distribution of ``values`` (None when there are none)."""
    if not values:
        return None
    p50, p95 = percentile(values, 50), percentile(values, 95)
    assert p50 is not None and p95 is not None  # not empty
    return Distribution(len(values), min(values), p50, p95, max(values))


@dataclass
class RepeatGroup:
    """The runs of one scenario: ``name`` without the run suffix, ``runs`` how many were asked for."""

    name: str
    runs: int
    outcomes: list[RunOutcome] = field(default_factory=list)
    #: per run: seconds to recovery (None: never recovered) measured by the share-of-runs step
    recoveries: dict[int, float | None] = field(default_factory=dict)

    def add(self, outcome: RunOutcome) -> None:
        """Record a finished run (once per run; a later record of the same run replaces it)."""
        self.outcomes = [o for o in self.outcomes if o.run != outcome.run] + [outcome]
        self.outcomes.sort(key=lambda o: o.run)

    @property
    def complete(self) -> bool:
        """Every asked-for run has ended."""
        return len(self.outcomes) >= self.runs

    @property
    def flaky(self) -> bool:
        """The verdict differed between the runs."""
        return len({o.passed for o in self.outcomes}) > 1

    def distributions(self) -> dict[str, Distribution | None]:
        """Each measure of :data:`MEASURES` over the runs that measured it."""
        return {
            name: distribution([v for o in self.outcomes if (v := getattr(o, name)) is not None])
            for name, _, _ in MEASURES
        }

    def verdicts(self) -> str:
        """Either "5 passed", or for a flaky group which runs passed and which failed, with the first failure."""
        passed = [o.run for o in self.outcomes if o.passed]
        failed = [o for o in self.outcomes if not o.passed]
        if not failed:
            return f"{len(passed)} passed"
        if not passed:
            return f"{len(failed)} failed"
        first = f": {failed[0].message}" if failed[0].message else ""
        return (
            f"FLAKY: passed in {plural(len(passed), 'run')} ({', '.join(map(str, passed))}), failed in"
            f" {plural(len(failed), 'run')} ({', '.join(str(o.run) for o in failed)}); run {failed[0].run}{first}"
        )

    def describe(self) -> str:
        """One line: the runs, the verdicts, then each measured distribution."""
        parts = [f"{self.name}: {plural(len(self.outcomes), 'run')} of {self.runs}, {self.verdicts()}"]
        never = [o.run for o in self.outcomes if o.recovered is False]
        for (name, label, unit), d in zip(MEASURES, self.distributions().values()):
            if d is not None:
                parts.append(f"{label} {d.describe(unit)}")
            if name == "recovery_time_s" and never:
                parts.append(f"never recovered in runs {', '.join(map(str, never))}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The group for figures.json and summary.json: runs, flaky, each distribution, each run."""
        return {
            "name": self.name,
            "runs": self.runs,
            "completed": len(self.outcomes),
            "flaky": self.flaky,
            "passed_runs": [o.run for o in self.outcomes if o.passed],
            "failed_runs": [o.run for o in self.outcomes if not o.passed],
            "distributions": {k: (None if d is None else asdict(d)) for k, d in self.distributions().items()},
            "outcomes": [asdict(o) for o in self.outcomes],
        }


def check_share_recovered_within(group: RepeatGroup, run: int, bound: float, percent: float) -> None:
    """At the group's last run: fail unless at least ``percent`` % of its runs recovered within ``bound`` s.

    A run that measured no recovery (it failed before the step, or never recovered) counts as not
    within the bound. Runs before the last only record their recovery.
    """
    if run < group.runs:
        return
    slow = []
    for n in range(1, group.runs + 1):
        took = group.recoveries.get(n)
        if took is None:
            slow.append(f"run {n} {'never recovered' if n in group.recoveries else 'measured no recovery'}")
        elif took > bound:
            slow.append(f"run {n} recovered after {seconds(took)}")
    within = group.runs - len(slow)
    share = 100.0 * within / group.runs
    if share < percent:
        raise CheckFailed(
            f"the API recovered within {bound:g} s in {within} of {plural(group.runs, 'run')} ({share:.0f}%),"
            f" not in {percent:g}%: " + "; ".join(slow)
        )
