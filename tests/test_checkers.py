"""The checkers on hand-made histories (times in monotonic seconds, chosen by hand)."""

from __future__ import annotations

import json

import pytest

from support.checks.durability import check_no_lost_writes, durability, written_keys
from support.checks.error_rates import check_error_rate_below, error_rate, phases
from support.checks.latency import check_no_request_slower_than, longest_silence, slow_requests
from support.checks.messages import NO_LOAD
from support.checks.metrics import metrics
from support.checks.recovery import check_recovered_within, recovery, recovery_after_faults
from support.checks.statuses import check_failures_are_503, check_no_failures_after, failures_after, failures_not_503
from support.checks.verdict import CheckFailed
from support.faults.timeline import FaultWindow
from support.load.history import FAIL, INFO, OK, Request, percentile
from support.load.recovery import RecoveryRule

T0 = 1000.0  # a monotonic origin far from zero, as real ones are


def req(
    t: float,
    outcome: str = OK,
    *,
    op: str = "write",
    key: str = "",
    status: int | None = None,
    error: str = "",
    latency: float = 0.01,
    body: str = "",
) -> Request:
    """A request that started ``t`` s into the load."""
    if status is None and not error:
        status = {OK: 201, FAIL: 409, INFO: 503}[outcome]
    start = T0 + t
    return Request(
        op=op,
        key=key or f"k{t:g}",
        scheduled=start,
        start=start,
        end=start + latency,
        status=status,
        error=error,
        outcome=outcome,
        body=body,
    )


def steady(start: float, stop: float, outcome: str = OK, step: float = 0.1) -> list[Request]:
    """One request every ``step`` s in [start, stop)."""
    n = round((stop - start) / step)
    return [req(round(start + i * step, 6), outcome) for i in range(n)]


# -- recovery -------------------------------------------------------------------


def test_no_failures_recovers_at_the_reference_with_time_zero() -> None:
    history = steady(0, 10)
    result = recovery(history, T0 + 5, since=T0 + 4)
    assert result.recovered
    assert result.recovered_at == T0 + 5
    assert result.recovery_time == 0
    assert (result.failures, result.outage_start, result.outage_end, result.outage) == (0, None, None, 0.0)
    check_recovered_within(result, 0)


def test_outage_and_recovery_are_measured_from_their_own_moments() -> None:
    history = steady(0, 4) + steady(4, 6, INFO) + steady(6, 10)
    result = recovery(history, reference=T0 + 5, since=T0 + 4)
    assert result.recovered
    assert result.recovered_at == pytest.approx(T0 + 6)
    assert result.recovery_time == pytest.approx(1.0)
    assert result.outage_start == pytest.approx(T0 + 4)
    assert result.outage_end == pytest.approx(T0 + 5.9)
    assert result.failures == 20
    check_recovered_within(result, 1.0)  # the bound is inclusive
    with pytest.raises(CheckFailed) as failed:
        check_recovered_within(result, 0.5)
    assert str(failed.value) == (
        "the API did not recover within 0.5 s: recovered after 1.0 s"
        " (outage 1.9 s from 4.0 s to 5.9 s, 20 failed requests)"
    )


def test_failures_until_the_end_never_recover_and_the_message_gives_the_window() -> None:
    history = steady(0, 3) + steady(3, 20, FAIL)
    result = recovery(history, reference=T0 + 3)
    assert not result.recovered
    assert result.recovered_at is None and result.recovery_time is None
    assert result.last_failure == pytest.approx(T0 + 19.9)
    with pytest.raises(
        CheckFailed,
        match=r"^the API never recovered: failing from 3\.0 s until the end of"
        r" observation at 19\.9 s \(170 failed requests",
    ):
        check_recovered_within(result, 10)


def test_flapping_recovery_counts_from_the_last_failure() -> None:
    flaps = [req(5.0, INFO), req(5.2), req(5.3), req(5.4, INFO), req(5.5), req(5.6, FAIL)]
    history = steady(0, 4) + steady(4, 5, INFO) + flaps + steady(5.7, 9)
    result = recovery(history, reference=T0 + 4.5, since=T0 + 4)
    assert result.recovered
    assert result.last_failure == pytest.approx(T0 + 5.6)
    assert result.recovered_at == pytest.approx(T0 + 5.7)
    assert result.recovery_time == pytest.approx(1.2)
    assert result.outage_end == pytest.approx(T0 + 5.6)


def test_the_run_needs_enough_successes_over_enough_time() -> None:
    run = [req(6 + i * 0.125) for i in range(5)]  # exactly 5 successes over exactly 0.5 s
    history = steady(4, 6, INFO) + run
    assert recovery(history, T0 + 5, min_successes=5, min_span=0.5).recovered
    assert not recovery(history, T0 + 5, min_successes=6, min_span=0.5).recovered
    assert not recovery(history, T0 + 5, min_successes=5, min_span=0.51).recovered
    dense = steady(4, 6, INFO) + steady(6, 6.3, step=0.01)  # 30 successes over 0.29 s
    result = recovery(dense, T0 + 5)
    assert not result.recovered
    assert result.run_successes == 30
    with pytest.raises(CheckFailed, match=r"30 successes over 0\.290 s after it"):
        check_recovered_within(result, 10)


def test_a_short_observation_without_failures_does_not_show_recovery() -> None:
    result = recovery(steady(0, 5.2), T0 + 5)
    assert not result.recovered
    with pytest.raises(CheckFailed, match=r"^the API did not show recovery: only 2 successes over 0\.100 s"):
        check_recovered_within(result, 10)


def test_requests_launched_before_the_reference_do_not_decide_recovery() -> None:
    # launched at 4.9 while the fault was held, timed out at 9.9: after the heal, but it does not count
    hung = req(4.9, INFO, error="timeout", status=None, latency=5.0)
    history = steady(0, 4) + [hung] + steady(5, 10)
    result = recovery(history, T0 + 5, since=T0 + 4)
    assert result.recovered and result.recovery_time == 0
    assert result.failures == 1 and result.outage_start == pytest.approx(T0 + 4.9)


def test_a_fault_never_healed_cannot_recover() -> None:
    windows = [FaultWindow("down", "postgres", injected=T0 + 2, healed=None)]
    result = recovery_after_faults(steady(0, 5), windows)
    assert not result.recovered and result.reference is None
    with pytest.raises(CheckFailed, match="never healed"):
        check_recovered_within(result, 10)


def test_recovery_after_faults_uses_the_windows_references() -> None:
    history = steady(0, 2) + steady(2, 3, INFO) + steady(3, 6)
    held = [FaultWindow("down", "postgres", injected=T0 + 2, healed=T0 + 2.5)]
    instant = [FaultWindow("restart", "postgres", injected=T0 + 2, healed=T0 + 2.5, instant=True)]
    assert recovery_after_faults(history, held).recovery_time == pytest.approx(0.5)
    assert recovery_after_faults(history, instant).recovery_time == pytest.approx(1.0)
    assert recovery_after_faults(history, held).outage_start == pytest.approx(T0 + 2)


def test_no_history_is_no_load() -> None:
    with pytest.raises(CheckFailed, match="no load ran in this scenario"):
        check_recovered_within(recovery([], T0), 10)
    with pytest.raises(CheckFailed, match="no load ran"):
        check_recovered_within(None, 10)
    for check in (
        lambda h: check_error_rate_below(h, 5),
        lambda h: check_no_request_slower_than(h, 1),
        check_failures_are_503,
        lambda h: check_no_failures_after(h, T0, "the heal"),
    ):
        for empty in (None, []):
            with pytest.raises(CheckFailed) as failed:
                check(empty)
            assert str(failed.value) == NO_LOAD
    with pytest.raises(CheckFailed, match="no load ran"):
        check_no_lost_writes(None)


def test_the_incremental_rule_gives_the_same_answer_in_any_order() -> None:
    # the worker feeds the rule as requests complete, out of start order; the checker feeds the history
    flaps = [req(5.0, INFO), req(5.2), req(5.3), req(5.4, INFO), req(5.5), req(5.6, FAIL)]
    history = steady(0, 4) + steady(4, 5, INFO) + flaps + steady(5.7, 9)
    expected = recovery(history, reference=T0 + 4.5, since=T0 + 4)
    for order in (history, history[::-1], sorted(history, key=lambda r: r.end), history[1::2] + history[::2]):
        rule = RecoveryRule(T0 + 4.5)
        for r in order:
            rule.add(r.start, r.outcome == OK)
        assert rule.holds
        assert rule.recovered_at == pytest.approx(expected.recovered_at)
        assert rule.last_failure == pytest.approx(expected.last_failure)
        assert (rule.successes, rule.span) == (expected.run_successes, pytest.approx(expected.run_span))


def test_the_rule_holds_only_once_the_run_is_long_enough_and_reports_its_figures() -> None:
    rule = RecoveryRule(T0 + 5, min_successes=3, min_span=0.2)
    rule.add(T0 + 4.9, False)  # before the reference: does not count
    assert (rule.failures, rule.last_failure, rule.holds, rule.recovered_at) == (0, None, False, None)
    for t in (5.1, 5.2):
        rule.add(T0 + t, True)
    assert not rule.holds  # 2 successes
    rule.add(T0 + 5.25, False)  # a failure ends the run
    for t in (5.3, 5.4, 5.5):
        rule.add(T0 + t, True)
    assert rule.holds and rule.recovered_at == pytest.approx(T0 + 5.3)
    assert rule.figures() == {
        "after": T0 + 5,
        "last_bad": T0 + 5.25,
        "bad": 1,
        "oks": 3,
        "first_ok": T0 + 5.3,
        "last_ok": T0 + 5.5,
        "recovered": True,
    }
    json.dumps(rule.figures())  # the worker sends them as JSON


# -- phases, rates, percentiles ---------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_phases_split_the_history_at_injection_heal_and_recovery() -> None:
    history = steady(0, 2) + steady(2, 4, INFO) + [req(4.0, FAIL), req(4.5)] + steady(5, 7)
    windows = [FaultWindow("down", "postgres", injected=T0 + 2, healed=T0 + 4)]
    result = phases(history, windows, recovered_at=T0 + 4.5)
    assert {name: p.count for name, p in result.items()} == {
        "before": 20,
        "fault": 20,
        "recovery": 1,
        "after": 21,
        "overall": 62,
    }
    assert result["fault"].error_rate == 1.0 and result["fault"].info == 20
    assert result["recovery"].fail == 1
    assert result["after"].error_rate == 0.0
    assert result["overall"].error_rate == pytest.approx(21 / 62)
    assert result["before"].p99 == pytest.approx(0.01)
    assert (result["fault"].start, result["fault"].end) == (T0 + 2, T0 + 4)


def test_phases_when_recovery_came_before_the_instant_faults_action_returned() -> None:
    history = steady(0, 3)
    windows = [FaultWindow("restart", "postgres", injected=T0 + 1, healed=T0 + 1.5, instant=True)]
    result = phases(history, windows, recovered_at=T0 + 1)
    assert (result["fault"].count, result["recovery"].count, result["after"].count) == (5, 0, 15)
    unhealed = phases(history, [FaultWindow("down", "api", T0 + 1, None)], recovered_at=None)
    assert unhealed["fault"].count == 20 and unhealed["fault"].end is None
    assert phases(history, [], None)["before"].count == 30


def test_error_rate_bound() -> None:
    history = steady(0, 9) + steady(9, 10, INFO)
    assert error_rate(history) == pytest.approx(0.1)
    check_error_rate_below(history, 10.01)
    with pytest.raises(
        CheckFailed,
        match=r"^the error rate was 10\.00%, not below 10%: 10 of 100 requests"
        r" failed \(0 fail, 10 info\) from 9\.0 s to 9\.9 s into the load; first write k9 at 9\.0 s \(status 503,"
        r" 0\.010 s\), last write k9\.9 at 9\.9 s \(status 503, 0\.010 s\)$",
    ):
        check_error_rate_below(history, 10)


# -- durability -------------------------------------------------------------------------


def write(t: float, key: str, outcome: str, name: str = "") -> Request:
    return req(t, outcome, key=key, body=f"{name or 'user-' + key}\t{key}")


def test_durability_sorts_writes_by_outcome_and_presence() -> None:
    history = [
        write(0, "a@x", OK),
        write(1, "b@x", OK),
        write(2, "c@x", OK),
        write(3, "d@x", INFO),
        write(4, "e@x", INFO),
        write(5, "f@x", FAIL),
        write(6, "g@x", FAIL),
        req(7, key="a@x", op="read", status=200),
    ]
    rows = {
        "a@x": ("user-a@x", "a@x"),
        "b@x": ("someone else", "b@x"),
        "d@x": ("user-d@x", "d@x"),
        "f@x": ("user-f@x", "f@x"),
        "zzz@x": ("not ours", "zzz@x"),
    }
    result = durability(history, rows)
    assert result.acknowledged == 3
    assert (result.lost, result.changed, result.fail_present) == (["c@x"], ["b@x"], ["f@x"])
    assert (result.info_present, result.info_absent) == (1, 1)
    assert not result.ok
    assert written_keys(history) == ["a@x", "b@x", "c@x", "d@x", "e@x", "f@x", "g@x"]
    with pytest.raises(CheckFailed) as failed:
        check_no_lost_writes(result)
    assert str(failed.value) == (
        "1 acknowledged write lost: c@x; 1 acknowledged write changed: b@x; 1 write answered as not applied"
        " exist anyway: f@x (of 3 acknowledged writes; unknown writes: 1 present, 1 absent)"
    )


def test_info_writes_may_be_present_or_absent() -> None:
    history = [write(0, "a@x", OK), write(1, "b@x", INFO), write(2, "c@x", INFO)]
    rows = {"a@x": ["user-a@x", "a@x"], "b@x": ["user-b@x", "b@x"]}
    result = durability(history, rows)
    assert result.ok and (result.info_present, result.info_absent) == (1, 1)
    check_no_lost_writes(result)


def test_lost_writes_are_named() -> None:
    history = [write(i, f"k{i}@x", OK) for i in range(12)]
    result = durability(history, {})
    with pytest.raises(CheckFailed, match=r"^12 acknowledged writes lost: k0@x, k1@x, .*, k9@x and 2 more"):
        check_no_lost_writes(result)


def test_a_key_acknowledged_once_is_acknowledged() -> None:
    history = [write(0, "a@x", INFO), write(1, "a@x", OK, name="second")]
    assert durability(history, {"a@x": ("second", "a@x")}).ok
    assert durability(history, {"a@x": ("user-a@x", "a@x")}).changed == ["a@x"]


# -- slowness, statuses, failures after a moment ------------------------------------------


def test_slow_requests_include_every_timeout() -> None:
    fast, slow = req(0, latency=0.1), req(1, latency=2.5)
    timed_out = req(2, INFO, status=None, error="timeout", latency=0.5)
    history = [fast, slow, timed_out]
    assert slow_requests(history, 1.0) == [slow, timed_out]
    assert slow_requests(history, 10.0) == [timed_out]
    check_no_request_slower_than([fast], 0.11)
    with pytest.raises(
        CheckFailed,
        match=r"^2 requests took longer than 1 s \(1 timed out\); slowest: write k1 at"
        r" 1\.0 s \(status 201, 2\.5 s\)",
    ):
        check_no_request_slower_than(history, 1.0)


def test_failures_not_503_split_statuses_from_transport_errors() -> None:
    refused = req(3, FAIL, status=None, error="connection refused")
    history = [req(0), req(1, INFO, status=503), req(2, INFO, status=500), req(2.5, FAIL, status=409), refused]
    found = failures_not_503(history)
    assert [r.status for r in found.statuses] == [500, 409]
    assert found.transport == [refused]
    assert len(found) == 3
    check_failures_are_503([req(0), req(1, INFO, status=503)])
    check_failures_are_503([req(0), req(1, INFO, status=503), refused], allow_transport_errors=True)
    with pytest.raises(
        CheckFailed,
        match=r"^3 failed requests not answered with 503: 2 with another status"
        r" \(500 x1, 409 x1\); 1 with no answer \(connection refused x1\)",
    ):
        check_failures_are_503(history)


def test_failures_after_a_moment() -> None:
    history = steady(0, 2, INFO) + steady(2, 4) + [req(4.05, INFO)]
    assert failures_after(history, T0 + 2) == [history[-1]]
    check_no_failures_after(history[:-1], T0 + 2, "the API recovered")
    with pytest.raises(
        CheckFailed,
        match=r"^1 request failed after the API recovered \(at 2\.0 s into the load\):"
        r" first write k4\.05 at 4\.0 s \(status 503",
    ):
        check_no_failures_after(history, T0 + 2, "the API recovered")


# -- metrics -----------------------------------------------------------------------------


def test_metrics_are_plain_json_numbers() -> None:
    history = steady(0, 2) + steady(2, 3, INFO) + steady(3, 5)
    windows = [FaultWindow("down", "postgres", injected=T0 + 2, healed=T0 + 2.5)]
    rec = recovery_after_faults(history, windows)
    dur = durability([write(0, "a@x", OK)], {})
    figures = metrics(history, windows, rec, dur)
    json.dumps(figures, allow_nan=False)
    assert figures["requests"] == 50 and figures["info"] == 10
    assert figures["error_rate_percent"] == 20.0
    assert figures["recovery"]["recovery_time_s"] == pytest.approx(0.5)
    assert figures["recovery"]["outage_start_at"] == pytest.approx(2.0)
    assert figures["phases"]["fault"]["count"] == 5
    assert figures["phases"]["after"]["start_at"] == pytest.approx(3.0)
    assert figures["durability"]["lost"] == 1 and figures["durability"]["lost_keys"] == ["a@x"]
    assert figures["faults"][0]["healed_at"] == pytest.approx(2.5)
    empty = metrics([], [], None)
    json.dumps(empty, allow_nan=False)
    assert empty["requests"] == 0 and "recovery" not in empty


# -- silence ---------------------------------------------------------------------------------


def test_a_freeze_is_the_longest_silence_though_no_request_failed() -> None:
    # answers every 0.1 s until 2.0; frozen until 4.5, when the waiting requests are answered at once
    waiting = [req(2.0 + i * 0.1, latency=4.5 - (2.0 + i * 0.1) + 0.01) for i in range(25)]
    history = steady(0, 2.0) + waiting + steady(4.6, 6.0)
    silence = longest_silence(history, since=T0 + 2.05)
    assert recovery(history, T0 + 4.5).failures == 0  # the outage window cannot see it
    assert silence.seconds == pytest.approx(4.51 - 1.91)
    assert (silence.after, silence.before) == (pytest.approx(T0 + 1.91), pytest.approx(T0 + 4.51))


def test_failed_answers_are_answers_timeouts_and_refusals_are_not() -> None:
    fast_503s = steady(0, 3.0, INFO)
    assert longest_silence(fast_503s, since=T0).seconds == pytest.approx(0.1)
    timeouts = [req(1.0 + i * 0.1, INFO, status=None, error="timeout", latency=0.5) for i in range(10)]
    history = steady(0, 1.0) + timeouts + steady(2.0, 3.0)
    assert longest_silence(history, since=T0 + 1.0).seconds == pytest.approx(2.01 - 0.91)


def test_a_silence_still_going_on_counts_up_to_until_and_no_answers_is_none() -> None:
    history = steady(0, 1.0)
    assert longest_silence(history, since=T0 + 0.5, until=T0 + 3.0).seconds == pytest.approx(3.0 - 0.91)
    assert longest_silence([], since=T0).seconds == 0.0
    assert longest_silence([], since=T0).after is None
