import os
import sys

import pytest

from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.core.waiting import WaitTimeout, wait_until


@pytest.fixture
def sleeper(tmp_path):
    code = "import time, sys\nprint('up', flush=True)\nwhile True: time.sleep(0.05)"
    spec = ProcessSpec([sys.executable, "-c", code], dict(os.environ), tmp_path, tmp_path / "out.log")
    process = SupervisedProcess("sleeper", spec)
    yield process
    process.close(timeout=5)
    assert process.pid is None


def state_of(pid):
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


def test_killed_process_comes_back_by_itself(sleeper):
    sleeper.start()
    first = sleeper.pid
    sleeper.kill()
    new_pid = wait_until(lambda: sleeper.pid not in (None, first) and sleeper.pid, 5, "restart")
    assert new_pid != first and sleeper.restarts == 1
    assert "restarting in" in (sleeper.spec.log_path.read_text())


def test_stopped_process_stays_down(sleeper):
    sleeper.start()
    sleeper.stop(timeout=5)
    assert sleeper.pid is None
    assert sleeper.wait_exit(0)
    # the restart policy would have acted within its 0.1 s back-off
    with pytest.raises(WaitTimeout):
        wait_until(lambda: sleeper.pid, 0.5, "an unwanted restart")


def test_pause_and_resume_freeze_the_group(sleeper):
    sleeper.start()
    sleeper.pause()
    wait_until(lambda: state_of(sleeper.pid) == "T", 2, "stopped state")
    sleeper.resume()
    wait_until(lambda: state_of(sleeper.pid) in "SR", 2, "running state")


def test_stop_of_a_paused_process_does_not_hang(sleeper):
    sleeper.start()
    sleeper.pause()
    sleeper.stop(timeout=3)
    assert sleeper.pid is None


def test_output_lines_carry_a_wall_clock_stamp(sleeper):
    sleeper.start()
    wait_until(lambda: "up" in sleeper.spec.log_path.read_text(), 5, "first line")
    stamp = sleeper.spec.log_path.read_text().split()[0]
    assert float(stamp) > 1.7e9
