"""The evidence adapter: what it attaches, and that no secret reaches any attachment."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import allure_commons
import pytest

from support.core.config import Settings
from support.core.ports import free_port
from support.evidence import allure as evidence
from support.faults.base import Fault
from support.faults.ledger import FaultLedger
from support.load.history import INFO, OK, Request

PASSWORD = "s3cret-Pa55word"
T0 = 7000.0


class Captured:
    """An Allure plugin that keeps every attachment instead of writing files."""

    def __init__(self) -> None:
        self.attachments: dict[str, bytes] = {}

    @allure_commons.hookimpl
    def attach_data(self, body, name, attachment_type, extension):
        self.attachments[name] = body if isinstance(body, bytes) else body.encode()


@pytest.fixture
def captured():
    plugin = Captured()
    allure_commons.plugin_manager.register(plugin)
    try:
        yield plugin
    finally:
        allure_commons.plugin_manager.unregister(plugin)


@dataclass
class Restart(Fault):
    """A fault that does nothing, so the ledger has a real window."""

    name: str = "restart"
    target: str = "postgres"
    instant: bool = True

    def inject(self) -> None:
        pass

    def heal(self) -> None:
        pass


def req(t: float, outcome: str = OK) -> Request:
    start = T0 + t
    # the body of a write is what the history CSV carries: make it carry the password too
    return Request(
        "write",
        f"k{t:g}@example.test",
        start,
        start,
        start + 0.01,
        201 if outcome == OK else 503,
        "",
        outcome,
        f"user {PASSWORD}\tk{t:g}@example.test",
    )


def make_state():
    port = free_port()  # nothing listens: the database snapshots and the health read fail fast
    dsn = f"postgresql://admin:{PASSWORD}@127.0.0.1:{port}/users"
    log = (
        f"1.0 connecting to postgresql+psycopg2://app:{PASSWORD}@127.0.0.1:{port}/users\n"
        f"2.0 password={PASSWORD} in a config dump\n"
    )
    service = SimpleNamespace(logs=lambda since=None: log)
    stack = SimpleNamespace(
        secrets=(PASSWORD,),
        names=["api", "postgres"],
        service=lambda name: service,
        admin_dsn=dsn,
        api_url=f"http://127.0.0.1:{port}",
    )
    clock = iter([T0 + 4.0, T0 + 4.2]).__next__
    ledger = FaultLedger(clock=clock, wall_clock=lambda: 1_700_000_000.0)
    ledger.inject(Restart())
    history = [req(t / 10, INFO if 40 <= t < 45 else OK) for t in range(100)]
    return SimpleNamespace(
        name=f"a scenario about {PASSWORD}",
        stack=stack,
        ledger=ledger,
        history=history,
        recovery=None,
        durability=None,
        load=None,
        settings=Settings(),
        notes={"dsn": dsn},
        figures=lambda: {},
        repeat=None,  # not one run of a repeated scenario
        cluster=None,  # no replicated database
    )


def test_every_piece_of_evidence_is_attached_and_no_attachment_holds_the_password(captured) -> None:
    state = make_state()
    evidence.begin_scenario(state, "features/database/x.feature", "Outages", ["chaos"])
    evidence.attach_scenario(state, failed=True)
    names = set(captured.attachments)
    assert {
        "timeline chart",
        "figures.json",
        "fault ledger.json",
        "notes.json",
        "api log",
        "postgres log",
        "history.csv",
        "pg_stat_activity after the scenario",
        "requests around the failure",
        "health endpoint at the end",
    } <= names, (names, captured.attachments.get("evidence errors"))
    assert "evidence errors" not in names, captured.attachments.get("evidence errors")
    assert captured.attachments["timeline chart"][:4] == b"\x89PNG"
    for name, body in captured.attachments.items():
        assert PASSWORD.encode() not in body, f"the password is in the attachment {name!r}"
    assert b"app:***@127.0.0.1" in captured.attachments["api log"]


def test_the_figures_carry_a_recovery_even_without_a_recovery_step(captured) -> None:
    state = make_state()
    evidence.attach_scenario(state, failed=False)
    recovery = json.loads(captured.attachments["figures.json"])["recovery"]
    # an instant fault at 4.0 s; requests failed until 4.4 s, the first of the run after them started at 4.5 s
    assert recovery["recovered"] is True
    assert recovery["recovery_time_s"] == pytest.approx(0.5)


def test_activity_samples_are_picked_before_and_during_each_fault() -> None:
    from support.faults.timeline import FaultWindow

    samples = [{"t": t} for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)]
    windows = [FaultWindow("stop", "postgres", 0.7, 1.6), FaultWindow("kill (SIGKILL)", "api", 2.2, 2.2, True)]
    picked = [(title, s["t"]) for title, s in evidence.pick_activity(samples, windows)]
    assert picked == [("before the fault", 0.5), ("during postgres stop", 1.0), ("during api kill (SIGKILL)", 2.5)]
    assert evidence.pick_activity([], windows) == [] and evidence.pick_activity(samples, []) == []
