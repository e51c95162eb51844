import json
import signal
from dataclasses import dataclass, field

import pytest

from support.core.config import Settings
from support.faults.base import Fault
from support.faults.factory import FaultFactory
from support.faults.ledger import FaultLedger, HealErrors
from support.stack.stack import Stack


class Clock:
    def __init__(self):
        self.now = 10.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@dataclass(eq=False)
class Recorder(Fault):
    """A fault that records what happened to it (a fake is fine: the ledger is the unit here)."""

    name: str = "stop"
    target: str = "postgres"
    instant: bool = False
    fail_inject: bool = False
    fail_heal: bool = False
    heal_error: str = "heal broke"
    events: list = field(default_factory=list)

    def inject(self):
        self.events.append("inject")
        if self.fail_inject:
            raise RuntimeError("inject broke")

    def heal(self):
        self.events.append("heal")
        if self.fail_heal:
            raise RuntimeError(self.heal_error)


def make_ledger(tmp_path):
    clock = Clock()
    return FaultLedger(
        journal=tmp_path / "faults.json", clock=clock, wall_clock=lambda: 1000.0 + clock.now, sleep=clock.sleep
    ), clock


def test_hold_injects_waits_and_heals_on_the_clock(tmp_path):
    ledger, clock = make_ledger(tmp_path)
    fault = Recorder()
    ledger.hold(fault, 3.0)
    [window] = ledger.windows()
    assert fault.events == ["inject", "heal"]
    assert window.injected == 10.0
    assert window.healed == pytest.approx(13.0)
    assert window.recovery_reference == pytest.approx(13.0)


def test_instant_fault_is_measured_from_its_injection(tmp_path):
    ledger, clock = make_ledger(tmp_path)
    ledger.inject(Recorder("restart", instant=True))
    [window] = ledger.windows()
    assert window.recovery_reference == 10.0


def test_heal_all_heals_even_a_fault_whose_inject_failed(tmp_path):
    ledger, _ = make_ledger(tmp_path)
    fault = Recorder(fail_inject=True)
    with pytest.raises(RuntimeError):
        ledger.inject(fault)
    assert json.loads((tmp_path / "faults.json").read_text())["open_faults"][0]["target"] == "postgres"
    ledger.heal_all()
    assert fault.events == ["inject", "heal"]
    assert json.loads((tmp_path / "faults.json").read_text())["open_faults"] == []


def test_every_heal_runs_when_one_fails(tmp_path):
    ledger, _ = make_ledger(tmp_path)
    first, second = Recorder("a"), Recorder("b", fail_heal=True)
    ledger.inject(first)
    ledger.inject(second)
    with pytest.raises(HealErrors, match="b of postgres: RuntimeError: heal broke"):
        ledger.heal_all()
    assert first.events == ["inject", "heal"]


def test_open_faults_are_healed_before_instant_ones(tmp_path):
    ledger, _ = make_ledger(tmp_path)
    order = []
    stop_db, kill_api = Recorder("stop", "postgres"), Recorder("kill", "api", instant=True)
    stop_db.heal = lambda: order.append("start postgres")
    kill_api.heal = lambda: order.append("start api")
    ledger.inject(stop_db)
    ledger.inject(kill_api)
    ledger.heal_all()
    assert order == ["start postgres", "start api"]


def test_hold_heals_when_interrupted(tmp_path):
    ledger, clock = make_ledger(tmp_path)
    fault = Recorder()

    def interrupted(seconds):
        raise KeyboardInterrupt

    ledger.sleep = interrupted
    with pytest.raises(KeyboardInterrupt):
        ledger.hold(fault, 5)
    assert fault.events == ["inject", "heal"]


def test_a_heal_that_fails_is_one_line_that_fails_the_scenario(tmp_path):
    ledger, _ = make_ledger(tmp_path)
    fault = Recorder("slow", fail_heal=True, heal_error="connection to server failed\n\tIs the server running?")
    with pytest.raises(HealErrors) as raised:
        ledger.hold(fault, 1.0)
    # an AssertionError: behave fails the step with this line instead of printing a traceback
    assert isinstance(raised.value, AssertionError)
    assert str(raised.value) == (
        "could not heal: slow of postgres: RuntimeError: connection to server failed Is the server running?"
    )
    assert ledger.open_faults() == [fault]  # still open: the end of the scenario tries again
    with pytest.raises(HealErrors) as again:
        ledger.heal_all()
    assert "\n" not in str(again.value)


def test_hold_interrupted_keeps_the_interrupt_when_the_heal_fails_too(tmp_path):
    ledger, _ = make_ledger(tmp_path)
    fault = Recorder(fail_heal=True)

    def interrupted(seconds):
        raise KeyboardInterrupt

    ledger.sleep = interrupted
    with pytest.raises(KeyboardInterrupt):
        ledger.hold(fault, 5)
    assert fault.events == ["inject", "heal"]


def test_a_fault_that_says_nothing_more_gets_the_contract_defaults(tmp_path):
    ledger, _ = make_ledger(tmp_path)
    fault = Recorder()
    assert (fault.active_since, fault.active_until, fault.residue(), fault.heal_note) == (None, None, None, "")
    ledger.inject(fault)
    [record] = json.loads((tmp_path / "faults.json").read_text())["open_faults"]
    assert record["residue"] is None


class FakeService:
    """A service that records the deadlines it is given."""

    def __init__(self, name):
        self.name, self.calls = name, []

    def restart(self, mode, timeout):
        self.calls.append(("restart", mode, timeout))

    def start(self, timeout):
        self.calls.append(("start", timeout))

    def stop(self, timeout):
        self.calls.append(("stop", timeout))

    def kill(self, sig):
        self.calls.append(("kill", sig))


def test_every_fault_on_a_service_waits_for_the_start_timeout_of_the_settings():
    # -D start_timeout=60 reached "the whole stack restarts" but not "api restarts" (a hard-coded 30 s)
    api = FakeService("api")
    waits = []
    stack = Stack("process", {"api": api}, "http://127.0.0.1:1", "dbname=x", "dbname=x user=app", start_order=("api",))
    stack.restart_all = waits.append
    stack.ensure_running = waits.append
    faults = FaultFactory(stack, Settings(start_timeout=60))
    for fault in (faults.restart("api", "immediate"), faults.kill("api"), faults.stop("api"), faults.restart_stack()):
        fault.inject()
        fault.heal()
    assert api.calls == [
        ("restart", "immediate", 60),
        ("start", 60),
        ("kill", signal.SIGKILL),
        ("start", 60),
        ("stop", 60),
        ("start", 60),
    ]
    assert waits == [60, 60]


def test_the_factory_supplies_the_database_role_and_the_workload_table():
    stack = Stack(
        "process",
        {},
        "http://127.0.0.1:1",
        "host=127.0.0.1 dbname=users user=postgres",
        "host=127.0.0.1 dbname=users user=users_api",
    )
    faults = FaultFactory(stack, Settings())
    assert faults.terminate_api_sessions().role == "users_api"
    assert faults.exhaust_slots().service_role == "users_api"
    assert faults.lock_table().table == stack.workload.table
    assert faults.slow_statements(0.5).table == stack.workload.table
    assert all(f.dsn == stack.admin_dsn for f in (faults.lock_table(), faults.read_only(), faults.exhaust_slots()))
