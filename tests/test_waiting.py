import pytest

from support.core.waiting import Deadline, WaitTimeout, retry, wait_until


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_returns_the_first_truthy_result():
    clock = FakeClock()
    values = iter([None, 0, "ready"])
    assert wait_until(lambda: next(values), 5, "x", clock=clock, sleep=clock.sleep) == "ready"


def test_times_out_on_the_clock_not_on_a_count_of_tries():
    clock = FakeClock()
    with pytest.raises(WaitTimeout, match=r"the thing did not happen within 2 s"):
        wait_until(lambda: False, 2.0, "the thing", interval=0.5, clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(102.0)


def test_names_the_last_error():
    clock = FakeClock()

    def check():
        raise ConnectionRefusedError("nope")

    with pytest.raises(WaitTimeout, match="ConnectionRefusedError: nope"):
        wait_until(check, 1.0, "connect", clock=clock, sleep=clock.sleep)


def test_deadline_remaining_never_negative():
    clock = FakeClock()
    deadline = Deadline(1.0, clock)
    clock.now += 5
    assert deadline.expired and deadline.remaining() == 0.0


def test_done_decides_which_result_ends_the_wait_and_the_timeout_says_what_was_last_seen():
    clock = FakeClock()
    readings = iter([{"t": 1}, {"t": 2}, {"t": 3}])
    assert wait_until(lambda: next(readings), 5, "x", done=lambda r: r["t"] >= 2, clock=clock, sleep=clock.sleep) == {
        "t": 2
    }
    with pytest.raises(WaitTimeout, match=r"the baseline did not happen within 1 s \(last seen: \{'t': 0\}\)") as info:
        wait_until(lambda: {"t": 0}, 1.0, "the baseline", done=lambda r: r["t"] >= 2, clock=clock, sleep=clock.sleep)
    assert info.value.last == {"t": 0} and info.value.error is None


def test_only_the_listed_exceptions_are_waited_out():
    clock = FakeClock()
    attempts = iter([ConnectionRefusedError("down"), KeyError("a bug")])

    def check():
        raise next(attempts)

    with pytest.raises(KeyError, match="a bug"):
        wait_until(check, 5, "x", retry_on=OSError, clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(100.01)  # one wait after the refusal, none after the bug


def test_a_predicate_can_pick_the_transient_errors():
    clock = FakeClock()

    def busy():
        raise RuntimeError("busy")

    with pytest.raises(WaitTimeout, match="last error: RuntimeError: busy") as info:
        wait_until(busy, 0.5, "a slot", retry_on=lambda e: "busy" in str(e), clock=clock, sleep=clock.sleep)
    assert isinstance(info.value.error, RuntimeError) and info.value.last is None
    with pytest.raises(RuntimeError, match="gone"):
        wait_until(
            lambda: (_ for _ in ()).throw(RuntimeError("gone")),
            0.5,
            "a slot",
            retry_on=lambda e: "busy" in str(e),
            clock=clock,
            sleep=clock.sleep,
        )


def test_retry_returns_whatever_the_call_returns_once_it_stops_failing():
    clock = FakeClock()
    outcomes = iter([OSError("not yet"), OSError("not yet"), None])

    def call():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry(call, 5, "the reset", retry_on=OSError, clock=clock, sleep=clock.sleep) is None
    assert clock.now == pytest.approx(100.02)
    assert retry(lambda: {}, 5, "an empty read", clock=clock, sleep=clock.sleep) == {}


def test_retry_times_out_on_the_clock_naming_the_last_error():
    clock = FakeClock()

    def refused():
        raise ConnectionRefusedError("nope")

    with pytest.raises(
        WaitTimeout, match=r"the read did not happen within 3 s \(last error: ConnectionRefusedError"
    ) as info:
        retry(refused, 3.0, "the read", interval=1.0, clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(103.0) and isinstance(info.value.error, ConnectionRefusedError)


def test_the_last_sleep_is_cut_to_the_deadline():
    clock = FakeClock()
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.sleep(seconds)

    with pytest.raises(WaitTimeout):
        wait_until(lambda: False, 1.0, "x", interval=0.4, clock=clock, sleep=sleep)
    assert sleeps == pytest.approx([0.4, 0.4, 0.2])
