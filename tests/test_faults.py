import json

import pytest

from support.faults.ledger import FaultLedger, HealErrors


class Clock:
    def __init__(self):
        self.now = 10.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Recorder:
    """A fault that records what happened to it (a fake is fine: the ledger is the unit here)."""

    def __init__(self, name="stop", target="postgres", instant=False, fail_inject=False, fail_heal=False):
        self.name, self.target, self.instant = name, target, instant
        self.fail_inject, self.fail_heal = fail_inject, fail_heal
        self.events = []

    def inject(self):
        self.events.append("inject")
        if self.fail_inject:
            raise RuntimeError("inject broke")

    def heal(self):
        self.events.append("heal")
        if self.fail_heal:
            raise RuntimeError("heal broke")


def make_ledger(tmp_path):
    clock = Clock()
    return FaultLedger(journal=tmp_path / "faults.json", clock=clock, wall_clock=lambda: 1000.0 + clock.now,
                       sleep=clock.sleep), clock


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
