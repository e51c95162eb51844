import math

import pytest

from support.checks.during_faults import (
    EffectWindow,
    check_answers_within_during_faults,
    check_writes_refused_reads_served,
    effect_window,
    fault_span,
    read_write_split,
)
from support.checks.verdict import CheckFailed
from support.faults.ledger import FaultLedger
from support.load.history import FAIL, INFO, OK, Request

WINDOW = EffectWindow("read-only", start=10.0, end=13.0, injected=9.9, healed=13.1)


def req(op, start, end, status, error=""):
    outcome = OK if status is not None and status < 300 else (FAIL if status is not None and status < 500 else INFO)
    return Request(op, f"{op}-{start}", start, start, end, status, error, outcome)


def good_history():
    return [
        req("write", 9.0, 9.01, 201),  # before: acknowledged
        req("write", 9.99, 10.02, 201),  # overlaps the start: served before the fault took effect
        req("write", 10.5, 10.51, 503),  # inside: refused
        req("read", 10.6, 10.61, 200),  # reads go on
        req("write", 12.99, 13.02, 201),  # overlaps the end: served after the heal took effect
        req("read", 12.0, 12.01, 200),
        req("write", 14.0, 14.01, 201),  # after
    ]


def test_writes_inside_refused_edges_either_way_reads_ok_passes():
    check_writes_refused_reads_served(good_history(), WINDOW)
    split = read_write_split(good_history(), WINDOW.start, WINDOW.end)
    assert (split.writes_inside, split.reads_overlapping) == (1, 2)


def test_a_write_acknowledged_inside_the_window_fails():
    history = good_history() + [req("write", 11.0, 11.02, 201)]
    with pytest.raises(
        CheckFailed,
        match=r"writes inside the window not answered 503: 1 \(201 x1\): write write-11.0"
        r" at 2.0 s \(status 201",
    ):
        check_writes_refused_reads_served(history, WINDOW)


def test_a_500_or_no_answer_fails_inside_and_at_the_edges():
    history = good_history() + [req("write", 11.0, 11.02, 500), req("write", 12.9, 13.5, None, "timeout")]
    with pytest.raises(CheckFailed) as failure:
        check_writes_refused_reads_served(history, WINDOW)
    message = str(failure.value)
    assert "not answered 503: 1 (500 x1)" in message
    assert "writes at the window's edges neither ok nor 503: 1 (timeout x1)" in message


def test_a_failed_read_overlapping_the_window_fails():
    history = good_history() + [req("read", 9.5, 10.2, 503)]
    with pytest.raises(CheckFailed, match=r"reads that failed: 1 \(503 x1\)"):
        check_writes_refused_reads_served(history, WINDOW)


def test_a_window_without_writes_or_reads_cannot_be_judged():
    history = [r for r in good_history() if not (r.op == "write" and r.start >= 10.0 and r.end <= 13.0)]
    with pytest.raises(CheckFailed, match="held 0 writes and 2 reads, too few to judge"):
        check_writes_refused_reads_served(history, WINDOW)
    with pytest.raises(CheckFailed, match="no load ran"):
        check_writes_refused_reads_served([], WINDOW)


class Fault:
    name, target, instant = "read-only", "postgres", False
    active_since = active_until = None

    def inject(self):
        self.active_since = clock.now + 0.05

    def heal(self):
        self.active_until = clock.now


class Clock:
    now = 10.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


clock = Clock()


def test_effect_window_prefers_the_faults_own_times_and_falls_back_to_the_ledger():
    clock.now = 10.0
    ledger = FaultLedger(clock=clock, wall_clock=clock, sleep=clock.sleep)
    fault = Fault()
    ledger.hold(fault, 3.0)
    window = effect_window(ledger)
    assert (window.start, window.end, window.injected, window.healed) == (10.05, 13.0, 10.0, 13.0)
    fault.active_since = fault.active_until = None
    assert (effect_window(ledger).start, effect_window(ledger).end) == (10.0, 13.0)
    open_ledger = FaultLedger(clock=clock, wall_clock=clock, sleep=clock.sleep)
    open_ledger.inject(Fault())
    assert math.isinf(effect_window(open_ledger).end) and math.isinf(fault_span(open_ledger)[1])
    with pytest.raises(CheckFailed, match="no fault was injected"):
        effect_window(FaultLedger(clock=clock))


def test_answers_within_judges_only_requests_started_while_the_fault_lasted():
    history = [
        req("read", 5.0, 9.0, 200),  # before the fault: slow, not judged
        req("write", 10.5, 11.5, 503),  # 1 s: within 2 s
        req("read", 12.0, 14.5, 200),  # 2.5 s: too slow
        req("read", 12.5, 17.5, None, "timeout"),  # a timeout is never within a bound
        req("read", 13.5, 20.0, 200),
    ]  # after the heal: not judged
    with pytest.raises(CheckFailed) as failure:
        check_answers_within_during_faults(history, (10.0, 13.0), 2.0)
    message = str(failure.value)
    assert message.startswith(
        "2 of the 3 requests started while the fault lasted (5.0 s to 8.0 s) took longer"
        " than 2 s (1 timed out); slowest: read read-12.5 at 7.5 s"
    )
    check_answers_within_during_faults(history[:2], (10.0, 13.0), 2.0)
    with pytest.raises(CheckFailed, match="no request of the load started while the fault lasted"):
        check_answers_within_during_faults(history[:1], (10.0, 13.0), 2.0)
