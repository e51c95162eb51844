"""The end-of-run summary: one row per scenario with its recovery time, error rate and lost writes.

Printed as a table on the terminal and written as ``summary.json`` (for
machines) into the results folder. Rows are built from a scenario's figures
(:func:`support.checks.metrics.metrics`), so the numbers are the ones the checks
judged and the evidence shows.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from support.checks.metrics import metrics
from support.checks.recovery import Recovery, recovery_after_faults
from support.checks.repeats import RepeatGroup, RunOutcome

__all__ = [
    "ScenarioRow",
    "RunSummary",
    "row_from_figures",
    "measured_recovery",
    "outcome_of",
    "format_table",
    "summary_json",
]

_NAME_WIDTH = 52


@dataclass(frozen=True)
class ScenarioRow:
    """One scenario's outcome. Durations in seconds, the error rate in percent.

    ``recovery_time_s`` is None when no fault was injected or it never
    recovered (``recovered`` False); ``lost_writes`` counts acknowledged
    writes missing or changed (None when durability was not checked);
    ``message`` is the first line of the failure, empty when it passed.
    """

    name: str
    feature: str
    status: str
    duration_s: float
    faults: list[str] = field(default_factory=list)
    requests: int = 0
    error_rate_percent: float | None = None
    recovered: bool | None = None
    recovery_time_s: float | None = None
    outage_s: float | None = None
    acknowledged_writes: int | None = None
    lost_writes: int | None = None
    message: str = ""
    #: a repeated scenario's run and how many it has (None: not repeated)
    run: int | None = None
    runs: int | None = None


def measured_recovery(state: Any) -> Recovery | None:
    """The recovery a scenario judged, or the one its load shows after its faults by the suite's rule
    (so that a scenario without a recovery step still gets a figure); None without a load or a fault.
    ``state`` is a :class:`support.run.scenario.ScenarioState`."""
    if getattr(state, "recovery", None) is not None:
        return state.recovery
    history = getattr(state, "history", None)
    windows = state.ledger.windows() if getattr(state, "ledger", None) is not None else []
    if not history or not windows:
        return None
    settings = state.settings
    return recovery_after_faults(history, windows, settings.recovery_min_successes, settings.recovery_min_span)


def row_from_figures(
    name: str, feature: str, status: str, duration_s: float, figures: Mapping[str, Any], message: str = ""
) -> ScenarioRow:
    """A row from a scenario's figures (the dict of :func:`support.checks.metrics.metrics`, {} without a load)."""
    recovery = figures.get("recovery") or {}
    durability = figures.get("durability")
    faults = [f"{f['target']} {f['name']}" for f in figures.get("faults", [])]
    lost = None if durability is None else durability.get("lost", 0) + durability.get("changed", 0)
    return ScenarioRow(
        name=name,
        feature=feature,
        status=status,
        duration_s=round(duration_s, 3),
        faults=faults,
        requests=figures.get("requests", 0),
        error_rate_percent=figures.get("error_rate_percent") if figures else None,
        recovered=recovery.get("recovered") if recovery else None,
        recovery_time_s=recovery.get("recovery_time_s") if recovery else None,
        outage_s=recovery.get("outage_s") if recovery else None,
        acknowledged_writes=None if durability is None else durability.get("acknowledged"),
        lost_writes=lost,
        message=message.strip().splitlines()[0] if message.strip() else "",
    )


def _status_of(scenario: Any) -> str:
    status = getattr(scenario, "status", "")
    return str(getattr(status, "name", status) or "untested")


def _failure_of(scenario: Any) -> str:
    """The first failed step's error, one line, without the exception's class name."""
    for step in getattr(scenario, "steps", []):
        exception = getattr(step, "exception", None)
        if exception is not None:
            return f"{step.keyword} {step.name}: {exception}" if str(exception) else type(exception).__name__
        if str(getattr(getattr(step, "status", ""), "name", "")) in ("failed", "error", "undefined"):
            return f"{step.keyword} {step.name}: {getattr(step, 'error_message', '') or step.status.name}"
    return ""


def _cell_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _recovery_cell(row: ScenarioRow) -> str:
    if row.recovered is None:
        return "-"
    return _cell_seconds(row.recovery_time_s) if row.recovered else "never"


def _lost_cell(row: ScenarioRow) -> str:
    if row.lost_writes is None:
        return "-"
    return f"{row.lost_writes} of {row.acknowledged_writes}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def outcome_of(row: ScenarioRow) -> RunOutcome:
    """A repeated scenario's run as its group records it: the row's verdict and measures."""
    return RunOutcome(
        run=row.run or 1,
        passed=row.status == "passed",
        recovered=row.recovered,
        recovery_time_s=row.recovery_time_s if row.recovered else None,
        outage_s=row.outage_s,
        error_rate_percent=row.error_rate_percent,
        lost_writes=row.lost_writes,
        message=row.message,
    )


def format_table(
    rows: Sequence[ScenarioRow], elapsed_s: float | None = None, repeated: Sequence[RepeatGroup] = ()
) -> str:
    """The rows as a fixed-width table with a heading line of totals; failures get their message below;
    then one distribution line per repeated scenario (``repeated``)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    totals = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    head = f"Chaos suite summary: {len(rows)} scenario{'s' if len(rows) != 1 else ''}" + (
        f" ({totals})" if rows else ""
    )
    if elapsed_s is not None:
        head += f" in {elapsed_s:.1f} s"
    columns = ("status", "scenario", "fault", "recovery", "errors", "requests", "lost writes")
    cells = [columns]
    for row in rows:
        cells.append(
            (
                "FAILED" if row.status in ("failed", "error", "hook_error") else row.status,
                _short(row.name, _NAME_WIDTH),
                _short(", ".join(row.faults) or "-", 28),
                _recovery_cell(row),
                "-" if row.error_rate_percent is None else f"{row.error_rate_percent:.1f}%",
                str(row.requests) if row.requests else "-",
                _lost_cell(row),
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    right = {3, 4, 5, 6}

    def line(c: Sequence[str]) -> str:
        return "  ".join(
            c[i].rjust(widths[i]) if i in right else c[i].ljust(widths[i]) for i in range(len(columns))
        ).rstrip()

    out = [head, line(cells[0]), "  ".join("-" * w for w in widths)]
    for row, c in zip(rows, cells[1:]):
        out.append(line(c))
        if row.message:
            out.append(" " * (widths[0] + 2) + "└ " + _short(row.message, 160))
    if repeated:
        out += ["", "Repeated scenarios (distributions over their runs):"]
        out += [f"  {'FLAKY' if group.flaky else 'runs '}  {group.describe()}" for group in repeated]
    return "\n".join(out) + "\n"


def summary_json(
    rows: Sequence[ScenarioRow], elapsed_s: float | None = None, repeated: Sequence[RepeatGroup] = ()
) -> dict[str, Any]:
    """The summary for machines: totals, one object per scenario (the fields of :class:`ScenarioRow`) and
    the repeated scenarios (:meth:`RepeatGroup.to_dict`)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return {
        "generated_at": round(time.time(), 3),
        "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
        "scenarios": len(rows),
        "by_status": counts,
        "lost_writes": sum(r.lost_writes or 0 for r in rows),
        "rows": [asdict(r) for r in rows],
        "repeated": [group.to_dict() for group in repeated],
        "flaky": [group.name for group in repeated if group.flaky],
    }


class RunSummary:
    """Collects a row per scenario during a run; :meth:`finish` prints the table and writes the JSON
    into ``results`` (the Allure results folder; None writes no JSON)."""

    def __init__(self, results: Path | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.results = results
        self.rows: list[ScenarioRow] = []
        #: the repeated scenarios seen, in the order they first ran
        self.repeated: list[RepeatGroup] = []
        self._clock = clock
        self._started = clock()

    def add(self, row: ScenarioRow) -> None:
        self.rows.append(row)

    def add_scenario(self, state: Any, scenario: Any) -> ScenarioRow:
        """Add the row of a finished scenario: ``state`` a ScenarioState (or None if it never got one),
        ``scenario`` anything shaped like behave's Scenario (name, status, duration, feature.name, steps)."""
        figures: dict[str, Any] = {}
        if state is not None and getattr(state, "history", None):
            try:
                figures = metrics(state.history, state.ledger.windows(), measured_recovery(state), state.durability)
            except Exception as error:  # noqa: BLE001 - a summary row must not break the run's end
                figures = {"requests": len(state.history)}
                state.notes["summary error"] = f"{type(error).__name__}: {error}"
        elif state is not None and state.ledger.windows():
            figures = {"faults": [{"target": w.target, "name": w.name} for w in state.ledger.windows()]}
        feature = getattr(getattr(scenario, "feature", None), "name", "")
        row = row_from_figures(
            scenario.name,
            feature,
            _status_of(scenario),
            float(getattr(scenario, "duration", 0.0)),
            figures,
            _failure_of(scenario),
        )
        repeat = getattr(state, "repeat", None)
        if repeat is not None:
            row = replace(row, run=repeat.run, runs=repeat.group.runs)
            repeat.group.add(outcome_of(row))
            if all(group is not repeat.group for group in self.repeated):
                self.repeated.append(repeat.group)
        self.add(row)
        return row

    def finish(self, stream: TextIO | None = None) -> None:
        """Print the table to ``stream`` (default the real stdout: behave captures sys.stdout in hooks)
        and write ``summary.json`` into the results folder when there is one."""
        elapsed = self._clock() - self._started
        out = stream if stream is not None else (sys.__stdout__ or sys.stdout)
        out.write("\n" + format_table(self.rows, elapsed, self.repeated))
        out.flush()
        results = self.results
        if results is not None:
            results.mkdir(parents=True, exist_ok=True)
            (results / "summary.json").write_text(json.dumps(summary_json(self.rows, elapsed, self.repeated), indent=2))
