"""The end-of-run summary: rows from real figures, the table, the JSON."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from support.checks.durability import Durability
from support.checks.metrics import metrics
from support.checks.recovery import recovery_after_faults
from support.checks.verdict import CheckFailed
from support.evidence.summary import (
    RunSummary,
    ScenarioRow,
    format_table,
    measured_recovery,
    row_from_figures,
    summary_json,
)
from support.faults.timeline import FaultWindow
from support.load.history import INFO, OK, Request

T0 = 2000.0


def req(t: float, outcome: str = OK) -> Request:
    start = T0 + t
    return Request(
        "write", f"k{t:g}", start, start, start + 0.01, 201 if outcome == OK else 503, "", outcome, f"n\tk{t:g}"
    )


def outage() -> tuple[list[Request], list[FaultWindow]]:
    """100 requests over 10 s; the 10 that started in [4, 5) failed; postgres restarted at 4 s."""
    history = [req(t / 10, INFO if 40 <= t < 50 else OK) for t in range(100)]
    return history, [FaultWindow("restart", "postgres", T0 + 4.0, T0 + 4.2, instant=True)]


def test_a_row_carries_the_figures_the_checks_judged() -> None:
    history, windows = outage()
    recovery = recovery_after_faults(history, windows)
    figures = metrics(history, windows, recovery, Durability(acknowledged=90, lost=["k1"], changed=["k2"]))
    row = row_from_figures("Postgres restart", "Outages", "passed", 12.34567, figures)
    assert row.recovered is True
    assert row.recovery_time_s == pytest.approx(1.0)
    assert row.error_rate_percent == pytest.approx(10.0)
    assert (row.requests, row.acknowledged_writes, row.lost_writes) == (100, 90, 2)
    assert row.faults == ["postgres restart"]
    assert row.duration_s == 12.346


def test_a_scenario_without_a_load_has_dashes() -> None:
    row = row_from_figures("Data survives", "Restarts", "passed", 1.0, {})
    assert (row.recovered, row.recovery_time_s, row.error_rate_percent, row.lost_writes) == (None, None, None, None)
    table = format_table([row])
    assert "Data survives" in table.splitlines()[-1]
    assert table.splitlines()[-1].split()[-4:] == ["-", "-", "-", "-"]


def test_the_table_shows_recovery_errors_lost_writes_and_the_failure() -> None:
    rows = [
        ScenarioRow(
            "The API rides out a Postgres restart under load",
            "Load",
            "passed",
            5.0,
            ["postgres restart"],
            500,
            1.2,
            True,
            0.184,
            0.2,
            250,
            0,
        ),
        ScenarioRow(
            "A killed API comes back under load",
            "Load",
            "failed",
            14.0,
            ["api kill (SIGKILL)"],
            700,
            80.69,
            False,
            None,
            9.0,
            100,
            3,
            "Then the API recovers within 5 seconds: the API never recovered",
        ),
    ]
    table = format_table(rows, elapsed_s=19.0)
    lines = table.splitlines()
    assert lines[0] == "Chaos suite summary: 2 scenarios (1 failed, 1 passed) in 19.0 s"
    assert lines[1].split() == ["status", "scenario", "fault", "recovery", "errors", "requests", "lost", "writes"]
    assert "0.18 s" in lines[3] and "1.2%" in lines[3] and "0 of 250" in lines[3]
    assert lines[4].startswith("FAILED") and "never" in lines[4] and "80.7%" in lines[4] and "3 of 100" in lines[4]
    assert lines[5].strip() == "└ Then the API recovers within 5 seconds: the API never recovered"


def test_summary_json_has_totals_and_every_field() -> None:
    rows = [ScenarioRow("a", "f", "passed", 1.0, lost_writes=0), ScenarioRow("b", "f", "failed", 2.0, lost_writes=2)]
    data = json.loads(json.dumps(summary_json(rows, 3.0)))
    assert data["scenarios"] == 2 and data["by_status"] == {"passed": 1, "failed": 1}
    assert data["lost_writes"] == 2
    assert data["rows"][1]["name"] == "b" and "recovery_time_s" in data["rows"][1]


def _state(history, windows, durability=None, recovery=None):
    """A stand-in for ScenarioState with a hand-made fault timeline."""
    return SimpleNamespace(
        history=history,
        ledger=SimpleNamespace(windows=lambda: windows),
        recovery=recovery,
        durability=durability,
        notes={},
        settings=SimpleNamespace(recovery_min_successes=5, recovery_min_span=0.5),
    )


def test_recovery_is_measured_when_no_step_judged_it() -> None:
    history, windows = outage()
    state = _state(history, windows)
    recovery = measured_recovery(state)
    assert recovery is not None and recovery.recovered and recovery.recovery_time == pytest.approx(1.0)
    assert measured_recovery(_state(history, [])) is None


def test_run_summary_collects_behave_scenarios_prints_and_writes_json(tmp_path) -> None:
    history, windows = outage()
    failed_step = SimpleNamespace(
        keyword="Then",
        name="no acknowledged write is lost",
        status=None,
        exception=CheckFailed("1 acknowledged write lost: k1"),
    )
    scenario = SimpleNamespace(
        name="Postgres restart",
        status=SimpleNamespace(name="failed"),
        duration=3.5,
        feature=SimpleNamespace(name="Outages"),
        steps=[SimpleNamespace(keyword="Given", name="x", status=None, exception=None), failed_step],
    )
    summary = RunSummary(results=tmp_path / "results", clock=iter([0.0, 42.0]).__next__)
    row = summary.add_scenario(_state(history, windows, Durability(acknowledged=90, lost=["k1"])), scenario)
    assert (row.status, row.recovery_time_s, row.lost_writes) == ("failed", pytest.approx(1.0), 1)
    assert row.message == "Then no acknowledged write is lost: 1 acknowledged write lost: k1"
    out = io.StringIO()
    summary.finish(out)
    assert "Chaos suite summary: 1 scenario (1 failed) in 42.0 s" in out.getvalue()
    data = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert data["rows"][0]["lost_writes"] == 1 and data["elapsed_s"] == 42.0
