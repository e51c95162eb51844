"""Run directories: a killed run's leftovers are recognised by its owner's PID and start time."""

import json
import os
import subprocess
import sys

import pytest

from support.core.config import SettingsError
from support.core.run_dirs import _owner_alive, check_work_root, owner_record


def _run_dir(tmp_path, record):
    run_dir = tmp_path / "run-x"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir


def test_the_owner_is_alive_while_its_pid_has_the_recorded_start_time(tmp_path):
    assert _owner_alive(_run_dir(tmp_path, owner_record()))


def test_a_reused_pid_is_not_taken_for_the_owner(tmp_path):
    # this Python process has the PID but started at another time than the recorded owner
    record = {**owner_record(), "pid_start": owner_record()["pid_start"] - 1}
    assert not _owner_alive(_run_dir(tmp_path, record))


def test_a_gone_owner_is_dead(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    record = owner_record(child.pid)
    child.wait()
    assert not _owner_alive(_run_dir(tmp_path, record))


def test_a_record_without_a_start_time_falls_back_to_a_python_owner(tmp_path):
    assert _owner_alive(_run_dir(tmp_path, {"pid": os.getpid()}))


def test_a_work_root_that_cannot_be_made_names_the_setting_and_the_fix():
    with pytest.raises(SettingsError) as error:
        check_work_root(__import__("pathlib").Path("/proc/x"))
    assert str(error.value) == (
        "work_root='/proc/x' cannot hold the run's directory (No such file or directory); "
        "set work_root to a directory the suite can create and write, such as "
        "/tmp/chaos-suite"
    )


def test_a_work_root_is_made_when_missing(tmp_path):
    check_work_root(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []
