"""The suite's judgements fail when the property they claim is broken, on a real stack."""

import time

import psycopg2
import pytest
from suite_runner import leftovers, project_with, run_behave

from support.checks.verdict import CheckFailed
from support.core.config import Settings
from support.core.waiting import Deadline
from support.run.suite import start_suite


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    suite = start_suite(Settings(work_root="/tmp/chaos-suite-tests", load_baseline=1.0))
    yield suite
    suite.close()


def test_durability_check_fails_when_acknowledged_rows_are_deleted_behind_the_api(suite):
    state = suite.begin_scenario("rows deleted behind the API's back")
    try:
        state.start_load(state.open_load(60))
        state.stop_load()
        acknowledged = [r.key for r in state.history if r.op == "write" and r.outcome == "ok"]
        assert len(acknowledged) >= 10
        victims = sorted(acknowledged)[:3]
        conn = psycopg2.connect(suite.stack.admin_dsn)
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM users WHERE email = ANY(%s)", (victims,))
        conn.close()
        with pytest.raises(CheckFailed) as failure:
            state.check_no_lost_writes()
        message = str(failure.value)
        assert message.startswith("3 acknowledged writes lost")
        assert all(key in message for key in victims)
    finally:
        suite.end_scenario(state)


def test_durability_check_fails_when_an_acknowledged_row_is_changed(suite):
    state = suite.begin_scenario("row changed behind the API's back")
    try:
        state.start_load(state.open_load(40))
        state.stop_load()
        victim = next(r.key for r in state.history if r.op == "write" and r.outcome == "ok")
        conn = psycopg2.connect(suite.stack.admin_dsn)
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE users SET name = 'tampered' WHERE email = %s", (victim,))
        conn.close()
        with pytest.raises(CheckFailed, match=f"changed.*{victim}"):
            state.check_no_lost_writes()
    finally:
        suite.end_scenario(state)


def test_recovery_check_fails_when_the_api_stays_down_past_the_bound(suite):
    state = suite.begin_scenario("API kept down")
    try:
        state.start_load(state.open_load(50))
        state.hold(state.faults.stop("api"), 0.2)  # healed: recovers
        state.check_recovered_within(5)
        assert state.recovery.recovered
    finally:
        suite.end_scenario(state)
    state = suite.begin_scenario("API kept down past the bound")
    api = suite.stack.service("api")
    try:
        state.start_load(state.open_load(50))
        state.inject(state.faults.kill("api"))  # instant: recovery is measured from the kill
        api.stop()  # ... and the restart policy is kept from bringing it back for 3 s
        deadline = Deadline(3.0)
        while not deadline.expired:
            time.sleep(0.05)
        api.start()
        with pytest.raises(CheckFailed, match=r"the API (did not recover within 2 s|never recovered: failing from)"):
            state.check_recovered_within(2)
        assert state.recovery.failures > 50
    finally:
        suite.end_scenario(state)


def test_a_scenario_judging_a_down_api_fails_through_behave(tmp_path):
    project = project_with(
        tmp_path,
        "down.feature",
        """Feature: kept down
  Scenario: The API is stopped and never started again
    Given the stack is healthy
    And a steady load of 50 requests per second
    When api is stopped
    Then the API recovers within 2 seconds
""",
    )
    run = run_behave(tmp_path / "work", cwd=project)
    assert run.returncode != 0
    assert "the fault was never healed" in run.output
    assert leftovers(run) == []


def test_a_then_step_without_a_load_says_what_is_missing(tmp_path):
    project = project_with(
        tmp_path,
        "noload.feature",
        """Feature: no load
  Scenario: Judging a load that never ran
    Given the stack is healthy
    When postgres restarts
    Then no acknowledged write is lost
""",
    )
    run = run_behave(tmp_path / "work", cwd=project)
    assert run.returncode != 0
    assert "no load ran in this scenario" in run.output
