"""The live progress line: what it says, and that it draws only where it should."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from support.evidence.progress import ProgressLine, describe_load, describe_state, progress_enabled


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


PROGRESS = {"t": 12.34, "sent": 600, "ok": 588, "errors": 12, "rps": 49.8, "in_flight": 2, "lag_p99_ms": 3.2}


def test_the_line_says_elapsed_rate_errors_and_recovery_awaited() -> None:
    text = describe_load(PROGRESS, {"oks": 3}, faults=1, min_successes=5)
    assert text == (
        "load  12.3 s ·   49.8 req/s · 600 sent · 12 errors (2.0%) · 2 in flight · lag p99 3 ms"
        " · 1 fault injected · awaiting recovery: 3/5 ok since the last failure"
    )
    assert describe_load({}) == "load starting…"


def test_a_scenario_without_a_running_load_has_no_line() -> None:
    assert describe_state(SimpleNamespace(load=None, history=None)) is None
    load = SimpleNamespace(progress=PROGRESS, watch=None)
    state = SimpleNamespace(
        load=load,
        history=None,
        ledger=SimpleNamespace(windows=lambda: []),
        settings=SimpleNamespace(recovery_min_successes=5),
    )
    assert describe_state(state).startswith("load  12.3 s")
    state.history = []  # the load was stopped and its history collected
    assert describe_state(state) is None


def test_auto_draws_only_on_a_terminal_and_the_mode_can_force_it(monkeypatch) -> None:
    monkeypatch.delenv("CHAOS_PROGRESS", raising=False)
    assert progress_enabled(Tty()) is True
    assert progress_enabled(io.StringIO()) is False
    assert progress_enabled(io.StringIO(), "always") is True
    monkeypatch.setenv("CHAOS_PROGRESS", "never")
    assert progress_enabled(Tty()) is False
    with pytest.raises(ValueError):
        progress_enabled(Tty(), "sometimes")


def test_the_line_is_redrawn_in_place_and_erased_on_pause() -> None:
    out = Tty()
    line = ProgressLine(lambda subject: f"hello {subject}", stream=out, mode="auto", interval=60)
    assert line.draw_once() is None  # following nothing yet
    line.follow("world")
    try:
        assert line.draw_once() == "hello world"
        line.pause()
        assert line.draw_once() is None
    finally:
        line.close()
    assert out.getvalue().endswith("\r\x1b[K")
    assert "\r\x1b[Khello world" in out.getvalue()
    assert "\n" not in out.getvalue()


def test_a_disabled_line_writes_nothing() -> None:
    out = io.StringIO()
    line = ProgressLine(lambda subject: "x", stream=out, mode="auto")
    line.follow("s")
    line.pause()
    line.close()
    assert out.getvalue() == ""
