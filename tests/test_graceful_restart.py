"""Graceful restarts: the in-flight checker over made-up histories, the fault's moments, the scenario
passing against the reference API (uvicorn drains) and failing against no_drain (requests in flight cut),
and a run SIGKILLed in the middle of a graceful restart cleaned up by the reaper and the next run."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docker_engine import require_docker
from suite_runner import BROKEN, REPO, project_with, run_behave, start_behave, wait_reaped

from support.checks.in_flight import check_no_in_flight_dropped, judge_drain, last_graceful_restart
from support.checks.verdict import CheckFailed
from support.core.run_dirs import clean_leftovers
from support.core.waiting import wait_until
from support.faults.graceful import GracefulRestart
from support.faults.process import ServiceKill
from support.load.history import FAIL, INFO, OK, Request

FEATURE = str(REPO / "features" / "recovery" / "graceful_restart.feature")


def req(key: str, start: float, end: float, status: int | None, outcome: str, error: str = "") -> Request:
    return Request("write", key, start, start, end, status, error, outcome)


@dataclass
class FakeService:
    """Records what the fault asked of it."""

    name: str = "api"
    calls: list[str] = field(default_factory=list)

    def stop(self, timeout: float) -> None:
        self.calls.append(f"stop {timeout:g}")

    def start(self, timeout: float) -> None:
        self.calls.append(f"start {timeout:g}")


def restart(signalled: float, ready: float, note: str = "") -> GracefulRestart:
    fault = GracefulRestart(FakeService(), 30.0)  # type: ignore[arg-type]
    fault.signalled_at, fault.exited_at, fault.ready_at, fault.heal_note = signalled, signalled + 0.2, ready, note
    return fault


def test_requests_in_flight_at_the_signal_and_answered_pass():
    history = [
        req("before", 9.0, 9.1, 201, OK),
        req("drained", 9.8, 10.3, 201, OK),  # in flight at 10.0, answered
        req("refused", 10.5, 10.5, None, FAIL, "connection refused"),  # nothing listens: inside the window
        req("after", 12.5, 12.6, 201, OK),
    ]
    drain = check_no_in_flight_dropped(history, restart(10.0, 12.0))
    assert [r.key for r in drain.in_flight] == ["drained"] and not drain.dropped and not drain.outside


def test_an_in_flight_request_without_an_answer_is_named_as_dropped():
    history = [
        req("cut", 9.8, 10.2, None, INFO, "server disconnected"),
        req("kept", 9.9, 10.1, 201, OK),
        req("later", 12.5, 12.6, 201, OK),
    ]
    with pytest.raises(CheckFailed) as failed:
        check_no_in_flight_dropped(history, restart(10.0, 12.0, "it exited 0.10 s after the stop signal"))
    message = str(failed.value)
    assert message.startswith(
        "1 of the 2 requests in flight when api got its stop signal was dropped without an answer"
    )
    assert "write cut at -0.200 s (no answer, server disconnected" in message
    assert "a graceful stop must finish the requests it has accepted" in message
    assert message.endswith("(it exited 0.10 s after the stop signal)") and "\n" not in message


def test_failures_outside_the_drain_window_are_named():
    history = [
        req("early", 5.0, 5.1, 503, INFO),
        req("kept", 9.9, 10.1, 201, OK),
        req("late", 12.5, 12.6, 503, INFO),
    ]
    drain = judge_drain(history, 10.0, 12.0)
    assert [r.key for r in drain.outside] == ["early", "late"]
    with pytest.raises(CheckFailed, match=r"2 requests failed outside the drain window .*2\.0 s\)"):
        check_no_in_flight_dropped(history, restart(10.0, 12.0))


def test_a_history_with_nothing_in_flight_proves_nothing():
    with pytest.raises(CheckFailed, match="no request was in flight when api got its stop signal"):
        check_no_in_flight_dropped([req("a", 9.0, 9.1, 201, OK), req("b", 12.5, 12.6, 201, OK)], restart(10.0, 12.0))


def test_a_scenario_without_a_graceful_restart_is_told_so():
    kill = ServiceKill(FakeService(), 30.0)  # type: ignore[arg-type]
    with pytest.raises(CheckFailed, match="no service was restarted gracefully"):
        last_graceful_restart([kill])


def test_the_fault_stops_within_its_deadline_starts_again_and_keeps_its_moments():
    service = FakeService()
    fault = GracefulRestart(service, 7.0)  # type: ignore[arg-type]
    fault.inject()
    assert service.calls == ["stop 7", "start 7"]
    assert fault.signalled_at <= fault.exited_at <= fault.ready_at  # type: ignore[operator]
    assert fault.instant and fault.heal_note.startswith("it exited")
    slow = GracefulRestart(FakeService(), 0.0)  # type: ignore[arg-type]
    slow.inject()
    assert "did not exit within 0 s of the stop signal and was killed" in slow.heal_note
    fault.heal()
    assert service.calls[-1] == "start 7"


def test_the_reference_api_drains_its_requests_in_flight(tmp_path):
    run = run_behave(tmp_path / "work", FEATURE)
    assert run.returncode == 0, run.output[-4000:]
    assert "1 scenario passed, 0 failed" in run.output


def test_an_api_that_does_not_drain_fails_naming_the_dropped_requests(tmp_path):
    run = run_behave(tmp_path / "work", "-D", f"stack_file={BROKEN / 'no_drain.toml'}", FEATURE)
    assert run.returncode == 1, run.output[-4000:]
    assert "in flight when api got its stop signal" in run.output, run.output[-4000:]
    assert "dropped without an answer" in run.output and "a graceful stop must finish" in run.output


SLOW_DRAIN = """Feature: a restart
  Scenario: A graceful restart
    Given the stack is healthy
    When api is restarted gracefully
"""


def test_a_run_killed_mid_restart_is_cleaned_up(tmp_path):
    """SIGKILL of the suite while the API drains: the journal names the open restart, the reaper removes
    the run's processes and the next run's sweep its directory."""
    work_root = Path("/tmp/chaos-suite-tests") / f"graceful-kill-{os.getpid()}"
    work_root.mkdir(parents=True, exist_ok=True)
    behave = start_behave(project_with(tmp_path, "drain.feature", SLOW_DRAIN), work_root)

    def restarting():
        if behave.poll() is not None:
            raise AssertionError((work_root / "behave.out").read_text()[-3000:])
        for journal in work_root.glob("run-*/faults.json"):
            faults = json.loads(journal.read_text() or "{}").get("open_faults", [])
            if any(f["fault"] == "graceful restart" for f in faults):
                return journal, faults
        return None

    journal, faults = wait_until(restarting, 120, "the graceful restart in the journal", retry_on=(OSError, ValueError))
    run_dir = journal.parent
    assert {(f["fault"], f["target"]) for f in faults} >= {("graceful restart", "api")}
    os.killpg(behave.pid, signal.SIGKILL)
    behave.wait()
    wait_reaped(run_dir)
    found = clean_leftovers(work_root)
    assert run_dir in found.run_dirs and not run_dir.exists()


def test_the_graceful_restart_on_docker(tmp_path):
    require_docker()
    passed = run_behave(tmp_path / "ok", "-D", "backend=docker", FEATURE)
    assert passed.returncode == 0, passed.output[-4000:]
    broken = run_behave(
        tmp_path / "broken", "-D", "backend=docker", "-D", f"stack_file={BROKEN / 'no_drain.toml'}", FEATURE
    )
    assert broken.returncode == 1 and "dropped without an answer" in broken.output, broken.output[-4000:]
