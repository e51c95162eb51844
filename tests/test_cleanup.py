"""Cleanup after anything: SIGTERM or SIGINT mid-scenario, and SIGKILL followed by a new run."""

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from suite_runner import project_with, start_behave

from support.backends.process import backend
from support.backends.reaper import reaper_of
from support.core.config import Settings
from support.core.process_tree import descendants
from support.core.run_dirs import clean_leftovers, marked_processes
from support.core.waiting import wait_until
from support.stack.services import ServiceError
from support.stack.stack import Cleanup

LONG_FAULT = """Feature: a long fault
  Scenario: Postgres frozen for a long time
    Given the stack is healthy
    And a steady load of 20 requests per second
    When postgres is paused for 60 seconds
"""


def open_fault_journal(work_root: Path, behave: subprocess.Popen) -> Path:
    def find():
        if behave.poll() is not None:
            raise AssertionError(
                f"behave exited with {behave.returncode} before the fault: "
                f"{(work_root / 'behave.out').read_text()[-3000:]}"
            )
        for journal in work_root.glob("run-*/faults.json"):
            if json.loads(journal.read_text() or "{}").get("open_faults"):
                return journal
        return None

    try:
        return wait_until(find, 60, "the fault being injected", interval=0.1, retry_on=(ValueError, OSError))
    except Exception:
        if behave.poll() is None:
            os.killpg(behave.pid, signal.SIGKILL)
            behave.wait()
        raise


@pytest.fixture
def work_root():
    # not under tmp_path: PostgreSQL runs as an unprivileged user, who cannot enter pytest's 0700 base
    root = Path("/tmp/chaos-suite-tests") / f"cleanup-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_scenario_heals_and_stops_everything(tmp_path, work_root, sig):
    behave = start_behave(project_with(tmp_path, "long.feature", LONG_FAULT), work_root)
    try:
        journal = open_fault_journal(work_root, behave)
        run_dir = journal.parent
        assert marked_processes(run_dir)
        behave.send_signal(sig)
        behave.wait(timeout=60)
    finally:
        if behave.poll() is None:
            os.killpg(behave.pid, signal.SIGKILL)
            behave.wait()
    assert behave.returncode != 0
    assert marked_processes(run_dir) == [], (work_root / "behave.out").read_text()[-3000:]
    assert json.loads(journal.read_text())["open_faults"] == []


def test_a_killed_run_is_cleaned_up_by_the_next_one(tmp_path, work_root):
    behave = start_behave(project_with(tmp_path, "long.feature", LONG_FAULT), work_root)
    run_dir = open_fault_journal(work_root, behave).parent
    # a power cut: the reaper (tests/test_reaper.py) dies with the suite and the load; PostgreSQL and the API do not
    os.kill(reaper_of(run_dir), signal.SIGKILL)
    os.killpg(behave.pid, signal.SIGKILL)
    behave.wait()
    marked = marked_processes(run_dir)
    assert marked, "a SIGKILLed run leaves its services behind: that is what the next run cleans"
    survivors = marked + [child for pid in marked for child in descendants(pid)]
    assert len(survivors) > len(marked), "PostgreSQL's backends (unmarked) are among them"
    found = clean_leftovers(work_root)
    assert run_dir in found.run_dirs and not run_dir.exists()
    wait_until(
        lambda: all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in survivors),
        5,
        "the leftover processes' exit",
    )


def _zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# -- the one teardown mechanism: Cleanup, an ExitStack -----------------------------------------


def test_cleanup_runs_every_callback_newest_first_and_raises_the_first_error():
    ran = []

    def failing(name):
        ran.append(name)
        raise RuntimeError(f"{name} would not close")

    made = Cleanup()
    made.callback(ran.append, "client")
    made.callback(failing, "volume")
    made.callback(ran.append, "link")
    made.callback(failing, "api")
    with pytest.raises(RuntimeError, match="api would not close"):
        made.close()
    assert ran == ["api", "link", "volume", "client"]
    made.close()  # nothing left: idempotent
    assert ran == ["api", "link", "volume", "client"]


def test_a_failed_start_unwinds_what_was_made_and_a_good_one_hands_it_to_the_stack():
    ran = []
    with pytest.raises(ValueError, match="api never ready"), Cleanup() as made:
        made.callback(ran.append, "postgres")
        made.callback(ran.append, "link")
        raise ValueError("api never ready")
    assert ran == ["link", "postgres"]

    ran.clear()
    with Cleanup() as made:
        made.callback(ran.append, "postgres")
        made.callback(lambda: (_ for _ in ()).throw(OSError("link gone")))
        kept = made.pop_all()
    assert ran == []  # a start that succeeds closes nothing
    with pytest.raises(OSError, match="link gone"):
        kept.close()
    assert ran == ["postgres"]


def test_a_process_stack_that_fails_to_start_stops_what_it_started(monkeypatch, tmp_path):
    seen = {}
    real_link, real_create = backend.start_link, backend._create_app_database

    def start_link(*args, **kwargs):
        seen["link"] = real_link(*args, **kwargs)
        return seen["link"]

    def create(postgres, *args):
        seen["postgres"] = postgres.pid
        return real_create(postgres, *args)

    def never_ready(self, timeout=30.0):
        raise ServiceError("api becoming ready did not happen within 0 s")

    monkeypatch.setattr(backend, "start_link", start_link)
    monkeypatch.setattr(backend, "_create_app_database", create)
    monkeypatch.setattr(backend.ApiProcess, "start", never_ready)
    settings = Settings(work_root="/tmp/chaos-suite-tests")
    run_dir = settings.work_root_path / f"test-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(ServiceError, match="api becoming ready"):
            backend.start_process_stack(settings, run_dir)
        pid = seen["postgres"]  # PostgreSQL had started: the failed start stopped it
        assert pid and (not Path(f"/proc/{pid}").exists() or _zombie(pid))
        assert not seen["link"].server.running
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
