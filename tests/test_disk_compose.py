"""The disk-full fault on the Compose backend (-D pg_disk_mb=N, root): it passes on the reference compose file,
and a SIGKILLed run leaves no mount and no container (the reaper unmounts the disk, ``down`` is not needed)."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

from docker_engine import require_docker
from suite_runner import REPO, run_behave, start_behave, wait_reaped

from support.backends.compose.backend import PROJECT_LABEL, project_name
from support.backends.docker.engine import docker_client
from support.core.mounts import mounts_below
from support.core.waiting import wait_until

COMPOSE = str(REPO / "stack" / "compose.yaml")
DISK = "features/resources/disk.feature"


def test_on_compose_the_disk_scenario_passes_and_leaves_no_mount(tmp_path):
    require_docker()
    run = run_behave(tmp_path, "-D", f"stack_file={COMPOSE}", "-D", "pg_disk_mb=256", DISK, timeout=300)
    assert run.returncode == 0 and "1 scenario passed" in run.output, run.output[-3000:]
    assert "postgres disk full" in run.output, run.output[-3000:]
    assert not [m for d in run.run_dirs for m in mounts_below(d)]


def test_on_compose_a_run_killed_mid_disk_fault_leaves_no_mount_and_no_container(tmp_path):
    require_docker()
    work_root = Path("/tmp/chaos-suite-tests") / f"disk-compose-{uuid.uuid4().hex[:8]}"
    work_root.mkdir(parents=True)
    behave = start_behave(REPO, work_root, "-D", f"stack_file={COMPOSE}", "-D", "pg_disk_mb=256", DISK)
    try:
        wait_until(lambda: bool(list(work_root.glob("run-*/disk-postgres/chaos-suite-filler"))), 120, "the disk filled")
    finally:
        os.killpg(behave.pid, signal.SIGKILL)
        behave.wait(10)
    (run_dir,) = work_root.glob("run-*")
    wait_reaped(run_dir, 60)
    client = docker_client()
    try:
        wait_until(
            lambda: (
                not client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project_name(run_dir.name)}"})
                and not mounts_below(run_dir)
            ),
            60,
            "the killed run's containers removed and its disk unmounted",
        )
    finally:
        client.close()
