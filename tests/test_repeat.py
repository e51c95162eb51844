"""Repeated runs: a scenario run N times on one stack reports its measures as distributions, the
share-of-runs recovery step judges all runs, and a scenario whose verdict differs between runs is
reported as flaky. Unit tests of support/checks/repeats.py and support/run/repeat.py, then real behave
runs against the reference API and against tests/broken_apis/flaky_recovery.py."""

from __future__ import annotations

import json
import re

import pytest
from behave.parser import parse_feature

from support.checks.repeats import RepeatGroup, RunOutcome, check_share_recovered_within, distribution
from support.checks.verdict import CheckFailed
from support.run.repeat import RepeatTagError, expand_repeats, repeat_count, repeat_of
from tests.suite_runner import BROKEN, project_with, run_behave

FEATURE = """\
@chaos
Feature: Repeated runs

  Scenario: The API rides out a short Postgres outage
    Given the stack is healthy
    And a steady load of 50 requests per second
    When postgres is down for 1 seconds
    Then the API recovers within 2 seconds in 60% of runs
    And the API recovers within 2 seconds
    And no acknowledged write is lost
"""


def test_distribution_is_min_nearest_rank_p50_p95_max() -> None:
    d = distribution([0.4, 0.1, 0.3, 0.2, 5.0])
    assert d is not None and (d.count, d.min, d.p50, d.p95, d.max) == (5, 0.1, 0.3, 5.0, 5.0)
    assert distribution([]) is None


def test_a_group_whose_verdicts_differ_is_flaky_and_names_the_runs() -> None:
    group = RepeatGroup("S", 3)
    group.add(RunOutcome(1, False, True, 3.1, 4.0, 9.0, 0, "Then x: the API did not recover within 2 s"))
    group.add(RunOutcome(2, True, True, 0.2, 1.1, 2.0, 0))
    group.add(RunOutcome(3, False, False, None, 4.2, 30.0, 2, "Then y"))
    assert group.complete and group.flaky
    line = group.describe()
    assert "FLAKY: passed in 1 run (2), failed in 2 runs (1, 3); run 1: Then x" in line
    assert "recovery min 0.2 p50 0.2 p95 3.1 max 3.1 s" in line and "never recovered in runs 3" in line
    assert "lost writes min 0 p50 0 p95 2 max 2" in line
    assert group.to_dict()["failed_runs"] == [1, 3]
    steady = RepeatGroup("T", 2, [RunOutcome(1, True), RunOutcome(2, True)])
    assert not steady.flaky and "2 passed" in steady.describe()


def test_share_of_runs_is_judged_at_the_last_run_only() -> None:
    group = RepeatGroup("S", 3, recoveries={1: 3.0, 2: 0.1})
    check_share_recovered_within(group, 2, 2.0, 60)  # not the last run: recorded only
    group.recoveries[3] = None
    with pytest.raises(CheckFailed, match=r"within 2 s in 1 of 3 runs \(33%\), not in 60%: run 1 recovered after"):
        check_share_recovered_within(group, 3, 2.0, 60)
    group.recoveries[3] = 0.5
    check_share_recovered_within(group, 3, 2.0, 60)  # 2 of 3 = 67%


def test_repeat_tags_and_the_expansion_into_runs() -> None:
    assert repeat_count(["chaos", "repeat.4"], 1) == 4 and repeat_count(["chaos"], 2) == 2
    with pytest.raises(RepeatTagError, match="@repeat.x: the runs of a scenario are a whole number"):
        repeat_count(["repeat.x"], 1)
    feature = parse_feature("Feature: F\n  @repeat.3\n  Scenario: A\n    Given a\n  Scenario: B\n    Given b\n")
    assert expand_repeats([feature], 1) == 2
    names = [s.name for s in feature.scenarios]
    assert names == ["A (run 1 of 3)", "A (run 2 of 3)", "A (run 3 of 3)", "B"]
    runs = [repeat_of(s) for s in feature.scenarios]
    assert runs[0].group is runs[2].group and [r.run for r in runs[:3]] == [1, 2, 3] and runs[3] is None
    assert feature.scenarios[0].steps[0] is not feature.scenarios[1].steps[0]  # each run its own step results


@pytest.mark.parametrize(
    ("variant", "runs"),
    [(None, 5), ("flaky_recovery", 3)],
    ids=["reference-five-runs", "flaky-variant"],
)
def test_repeated_runs_report_distributions_and_flakiness(tmp_path, variant, runs) -> None:
    project = project_with(tmp_path, "repeat.feature", FEATURE)
    results = project / "reports" / "allure-results"  # behave.ini's, under the project
    args = ["-D", f"repeat={runs}"]
    if variant is not None:
        args += ["-D", f"stack_file={BROKEN / f'{variant}.toml'}"]
    run = run_behave(tmp_path, *args, "features", cwd=project, timeout=600)
    summary = json.loads((results / "summary.json").read_text())
    [group] = summary["repeated"]
    assert group["runs"] == runs and group["completed"] == runs, run.output[-3000:]
    line = next(x for x in run.output.splitlines() if "The API rides out a short Postgres outage:" in x)
    assert f"{runs} runs of {runs}" in line and "recovery min " in line and "errors min " in line, line
    charts = [
        a
        for p in results.glob("*-result.json")
        for a in json.loads(p.read_text()).get("attachments", [])
        if a["name"] == "runs chart"
    ]
    assert len(charts) == 1 and (results / charts[0]["source"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if variant is None:
        assert run.returncode == 0 and not group["flaky"] and "5 passed" in line, run.output[-3000:]
        assert group["distributions"]["recovery_time_s"]["count"] == 5
    else:
        # odd-numbered outages are held 3 s: runs 1 and 3 fail, run 2 passes, and the share step fails run 3
        assert run.returncode != 0 and group["flaky"], run.output[-3000:]
        assert group["passed_runs"] == [2] and group["failed_runs"] == [1, 3], line
        assert line.lstrip().startswith("FLAKY") and "passed in 1 run (2), failed in 2 runs (1, 3)" in line, line
        assert summary["flaky"] == ["The API rides out a short Postgres outage"]
        share = r"in 1 of 3 runs \(33%\), not in 60%: run 1 (recovered after [\d.]+ s|never recovered); run 3"
        assert re.search(share, run.output), run.output[-3000:]
