"""The node faults of the replicated stack (features/ha/node_faults.feature) and its rolling restart of the API
replicas (features/ha/rolling_restart.feature): each scenario passes on the reference stack, and fails against a
variant that lacks the property it claims, with a message naming it.

One behave run for the reference (five scenarios on one cluster) and one per variant and scenario (about a minute
and a half each here); each HA run starts a real cluster (three etcd members, three Patroni nodes, two HAProxies,
two API replicas). The in-flight checker's rolling form and the rolling fault's order are tested without one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import pytest

from support.checks.in_flight import check_no_in_flight_dropped, graceful_restarts
from support.checks.verdict import CheckFailed
from support.faults.graceful import GracefulRestart, RollingRestart
from support.load.history import FAIL, INFO, OK, Request
from support.stack.stack_file import load_stack_file
from tests.suite_runner import BROKEN, REPO, leftovers, run_behave

HA_STACK = "stack_file=stack/ha/stack.toml"
FEATURES = [str(REPO / "features" / "ha" / name) for name in ("node_faults.feature", "rolling_restart.feature")]
# the first requests through two HAProxies and the fault proxy pay for fresh connections: a longer baseline
OPTIONS = ("-D", "load_baseline=3")

needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool, path="/usr/bin:/usr/sbin:/bin") for tool in ("patroni", "etcd", "haproxy")),
    reason="Patroni, etcd and HAProxy are needed: bash setup.sh installs them (requirements-debian.txt)",
)


def req(key: str, start: float, end: float, status: int | None, outcome: str, error: str = "") -> Request:
    return Request("write", key, start, start, end, status, error, outcome)


@dataclass
class FakeReplica:
    name: str
    calls: list[str] = field(default_factory=list)

    def stop(self, timeout: float) -> None:
        self.calls.append("stop")

    def start(self, timeout: float) -> None:
        self.calls.append("start")


def restarted(name: str, signalled: float, ready: float) -> GracefulRestart:
    fault = GracefulRestart(FakeReplica(name), 30.0)  # type: ignore[arg-type]
    fault.signalled_at, fault.exited_at, fault.ready_at = signalled, signalled + 0.2, ready
    return fault


def rolling(*restarts: GracefulRestart) -> RollingRestart:
    fault = RollingRestart([r.service for r in restarts], "http://127.0.0.1:9", 30.0)
    fault.restarts = list(restarts)
    return fault


def test_a_rolling_restart_is_judged_at_each_replicas_signal_with_a_window_each():
    restarts = graceful_restarts([rolling(restarted("api1", 10.0, 12.0), restarted("api2", 13.0, 15.0))])
    assert [r.target for r in restarts] == ["api1", "api2"]
    history = [
        req("drained1", 9.8, 10.3, 201, OK),
        req("drained2", 12.8, 13.4, 201, OK),
        req("refused", 13.5, 13.5, 503, INFO),  # in api2's window: the error rate judges it
        req("after", 15.5, 15.6, 201, OK),
    ]
    drain = check_no_in_flight_dropped(history, restarts)
    assert [r.key for r in drain.in_flight] == ["drained1", "drained2"] and not drain.outside


def test_a_gateway_error_for_a_request_in_flight_is_a_drop_and_is_named_with_its_replica():
    restarts = graceful_restarts([rolling(restarted("api1", 10.0, 12.0), restarted("api2", 13.0, 15.0))])
    history = [
        req("kept", 9.8, 10.3, 201, OK),
        req("cut", 12.9, 13.1, 502, INFO),  # the balancer: api2 closed it unanswered
        req("between", 12.5, 12.6, 500, FAIL),  # outside both windows
    ]
    with pytest.raises(CheckFailed) as failed:
        check_no_in_flight_dropped(history, restarts)
    message = str(failed.value)
    assert message.startswith("1 of the 1 request in flight when api2 got its stop signal was dropped without")
    assert (
        "1 request failed outside the drain windows (from the stop signal to api1 ready again, 2.0 s, api2" in message
    )


def test_a_rolling_restart_with_nothing_in_flight_proves_nothing():
    restarts = graceful_restarts([rolling(restarted("api1", 10.0, 12.0), restarted("api2", 13.0, 15.0))])
    with pytest.raises(CheckFailed, match="no request was in flight when api1 and api2 got their stop signal"):
        check_no_in_flight_dropped([req("a", 9.0, 9.1, 201, OK)], restarts)


def test_the_rolling_restart_stops_each_replica_and_waits_for_the_balancer_before_the_next(monkeypatch):
    order: list[str] = []
    one, two = FakeReplica("api1", order), FakeReplica("api2", order)
    monkeypatch.setattr(
        "support.faults.graceful.wait_balanced",
        lambda url, replica, timeout: order.append(f"balanced {replica.name}") or 1.0,
    )
    fault = RollingRestart([one, two], "http://127.0.0.1:9", 5.0)  # type: ignore[list-item]
    fault.inject()
    assert order == ["stop", "start", "balanced api1", "stop", "start", "balanced api2"]
    assert [r.ready_at for r in fault.restarts] == [1.0, 1.0] and fault.target == "api1, api2"
    fault.heal()
    assert order[-2:] == ["start", "start"]


def test_the_node_fault_variants_load():
    for variant in ("remote_apply", "pinned_primary", "unchecked_balancer", "no_spare_replica"):
        load_stack_file(BROKEN / f"{variant}.toml")


@needs_tools
def test_the_node_fault_and_rolling_restart_scenarios_pass_and_leave_nothing_running(tmp_path):
    run = run_behave(tmp_path / "work", "-D", HA_STACK, *OPTIONS, "--tags=@ha", *FEATURES)
    assert run.returncode == 0, run.output[-4000:]
    assert "5 scenarios passed, 0 failed" in run.output
    assert leftovers(run) == []


def _variant(tmp_path, variant: str, tags: str):
    stack = f"stack_file={BROKEN / f'{variant}.toml'}"
    run = run_behave(tmp_path / "work", "-D", stack, *OPTIONS, f"--tags={tags}", *FEATURES)
    assert run.returncode != 0, run.output[-3000:]
    assert leftovers(run) == []
    return run


@needs_tools
@pytest.mark.parametrize("tag", ["@stopped", "@paused"])
def test_a_pool_pinned_to_the_first_primary_recovers_neither_from_its_stop_nor_from_its_freeze(tmp_path, tag):
    # one run each: a pinned API stays pinned to the old primary, so a second scenario would fail in its baseline
    run = _variant(tmp_path, "pinned_primary", tag)
    assert "ASSERT FAILED: the API never recovered" in run.output, run.output[-3000:]


@needs_tools
def test_commits_that_wait_for_the_replicas_to_apply_them_stall_while_replication_lags(tmp_path):
    run = _variant(tmp_path, "remote_apply", "@lag")
    assert "ASSERT FAILED: the error rate was" in run.output, run.output[-3000:]


@needs_tools
def test_a_cluster_without_a_spare_replica_stalls_its_writes_when_its_synchronous_replica_dies(tmp_path):
    run = _variant(tmp_path, "no_spare_replica", "@replica")
    assert "ASSERT FAILED: the error rate was" in run.output, run.output[-3000:]


@needs_tools
def test_a_balancer_without_health_checks_sends_requests_to_the_replica_that_restarts(tmp_path):
    run = _variant(tmp_path, "unchecked_balancer", "@rolling")
    assert "ASSERT FAILED: the error rate was" in run.output, run.output[-3000:]
