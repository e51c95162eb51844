"""Nothing outlives the suite: after SIGKILL of behave, its reaper removes the run's processes and containers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from suite_runner import listening_ports, project_with, start_behave

from support.backends.reaper import describe_removed, reaper_of
from support.core.process_tree import descendants
from support.core.run_dirs import clean_leftovers, marked_processes
from support.core.waiting import WaitTimeout, wait_until

PAUSED_POSTGRES = """Feature: a paused database
  Scenario: Postgres frozen while the suite is killed
    Given the stack is healthy
    And a steady load of 20 requests per second
    When postgres is paused for 60 seconds
"""
GONE_WITHIN = 5.0  # seconds after the SIGKILL


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _backends():
    yield "process"
    if _docker_answers():
        yield "docker"
    elif os.environ.get("CHAOS_REQUIRE_DOCKER") == "1":
        yield pytest.param("docker", marks=pytest.mark.xfail(strict=True, reason="CHAOS_REQUIRE_DOCKER=1: no daemon"))
    else:
        yield pytest.param("docker", marks=pytest.mark.skip(reason="no Docker daemon answers `docker info`"))


@pytest.fixture
def work_root():
    root = Path("/tmp/chaos-suite-tests") / f"reaper-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _paused_run(behave: subprocess.Popen, work_root: Path) -> Path:
    """The run dir, once PostgreSQL is paused (the fault is on the journal and the addresses in run.json)."""

    def find():
        if behave.poll() is not None:
            raise AssertionError(
                f"behave exited with {behave.returncode} before the fault: "
                f"{(work_root / 'behave.out').read_text()[-3000:]}"
            )
        for journal in work_root.glob("run-*/faults.json"):
            if json.loads(journal.read_text() or "{}").get("open_faults"):
                return journal.parent
        return None

    return wait_until(find, 240, "postgres being paused", interval=0.1)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _containers(run_id: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=chaos-suite.run={run_id}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.split()


@pytest.mark.parametrize("backend", list(_backends()))
def test_sigkill_of_behave_during_a_paused_postgres_leaves_nothing(tmp_path, work_root, backend):
    behave = start_behave(
        project_with(tmp_path, "paused.feature", PAUSED_POSTGRES), work_root, "-D", f"backend={backend}"
    )
    try:
        run_dir = _paused_run(behave, work_root)
        ports = [int(a.rsplit(":", 1)[1]) for a in json.loads((run_dir / "run.json").read_text())["addresses"].values()]
        marked = marked_processes(run_dir)
        tree = marked + [child for pid in marked for child in descendants(pid)]
        assert tree and set(ports) <= listening_ports()
        if backend == "docker":
            assert len(_containers(run_dir.name)) == 2
    finally:
        os.kill(behave.pid, signal.SIGKILL)  # behave alone, as `kill -9 PID` does: its reaper is left to act
        behave.wait()

    def left() -> list[str]:
        found = [f"process {pid}" for pid in dict.fromkeys(tree + marked_processes(run_dir)) if _alive(pid)]
        found += [f"port {port}" for port in ports if port in listening_ports()]
        if backend == "docker":
            found += [f"container {c}" for c in _containers(run_dir.name)]
        return found

    try:
        with contextlib.suppress(WaitTimeout):  # the assertions below say what is left
            wait_until(
                lambda: not left() and reaper_of(run_dir) is None,
                GONE_WITHIN,
                "the run's processes, ports and containers going",
                interval=0.1,
            )
        assert left() == [], f"still there {GONE_WITHIN:g} s after the SIGKILL"
        assert reaper_of(run_dir) is None, "the reaper exits once it has swept"
        note = (run_dir / "reaper.log").read_text()
    finally:
        clean_leftovers(work_root)  # whatever the verdict, the machine as it was found
        if backend == "docker":
            subprocess.run(
                ["docker", "volume", "rm", "-f", f"chaos-suite-{run_dir.name}-pgdata"], capture_output=True, timeout=60
            )
    assert note.startswith("reaper: removed "), note
    if backend == "process":
        assert "process" in note, note
    else:  # keep_work_dir=true (as the test runner sets it) keeps the volume
        assert "2 containers" in note and "volume" not in note, note


def test_describe_removed_names_each_kind_it_removed():
    text = describe_removed(
        {
            "container": ["chaos-suite-x-api", "chaos-suite-x-postgres"],
            "volume": ["v"],
            "process": [],
            "run directory": ["run-1", "run-2"],
        }
    )
    assert text == (
        "2 containers (chaos-suite-x-api, chaos-suite-x-postgres), 1 volume (v), 2 run directories (run-1, run-2)"
    )
    assert describe_removed({"process": []}) == "nothing"
