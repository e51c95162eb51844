import pytest

from support.core.waiting import Deadline, WaitTimeout, wait_until


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
