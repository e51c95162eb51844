"""Resource faults (features/resources/): disk full, CPU and memory limits, a CPU hog, descriptor limits.

Unit tests of the mechanisms on real processes, cgroups and a real tmpfs (root, cgroup v1: what
this machine has; elsewhere they are refused with one line, which is tested too), the heal of a
cgroup after SIGKILL of the suite from the journal, and the features run end to end: they pass
against the reference API and fail against a variant lacking the protection, with a message that
names it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
from docker_engine import require_docker
from suite_runner import BROKEN, leftovers, project_with, run_behave, start_behave

from support.backends.docker.backend import start_docker_stack
from support.backends.docker.disk import mount_data_disk
from support.backends.docker.engine import docker_client
from support.backends.docker.labels import RUN_LABEL
from support.backends.docker.specs import PG_DATA_MOUNT
from support.backends.reaper import reaper_of
from support.core.config import Settings, SettingsError, load_settings
from support.core.mounts import fstype_of, mount_tmpfs, mounts_below, unmount
from support.core.process_tree import descendants
from support.core.waiting import wait_until
from support.faults.cgroups import CGROUP_ROOT, PREFIX, ChildCgroup, FaultUnavailable, _own_path, cgroup_of, unavailable
from support.faults.cpu_hog import CpuHog
from support.faults.descriptors import DescriptorLimit, descriptor_limit
from support.faults.disk import FILLER, DiskFull, what_postgres_did
from support.faults.host_residues import heal_host_residues
from support.faults.limits import CpuLimit, MemoryLimit
from support.stack.services import ServiceError

ROOT = os.geteuid() == 0
V1 = ROOT and not unavailable("cpu") and not unavailable("memory")
needs_root = pytest.mark.skipif(not ROOT, reason="mounts and other processes' limits need root")
needs_v1 = pytest.mark.skipif(not V1, reason="the cgroup limits drive cgroup v1 as root")
RESOURCES = "features/resources"


@dataclass
class Child:
    """A stand-in for a service: the test's own child processes (a real process tree), named like one."""

    name: str = "api"
    argv: list[str] = field(default_factory=lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    disk_path: Path | None = None
    restarts: int = 0
    proc: subprocess.Popen | None = None
    killed: int = 0

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen(self.argv)

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [] if self.proc.poll() is not None else [self.proc.pid, *descendants(self.proc.pid)]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.killed += 1

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = getattr(self, "stopped", 0) + 1

    def start(self, timeout: float = 30.0) -> None:
        self.restarts += 1

    def logs(self, since: float | None = None) -> str:
        return '2026-12-01 PANIC:  could not write to file "pg_wal/xlogtemp.42": No space left on device\n'

    def close(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet (a worker whose parent was killed)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def child():
    made = Child()
    yield made
    made.close()


# -- refusals: one line saying what is missing and how to get it ------------------------------------


def test_cgroup_v2_only_or_a_missing_controller_is_refused_in_one_line(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert "cgroup v2 only" in unavailable("cpu", tmp_path) and "backend=docker" in unavailable("cpu", tmp_path)
    (tmp_path / "cgroup.controllers").unlink()
    reason = unavailable("memory", tmp_path)
    assert reason.startswith("no cgroup v1 memory controller is mounted") and "\n" not in reason


def test_the_cgroup_path_of_a_process_is_read_from_its_proc_entry():
    text = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
    assert _own_path("memory", text) == "/process_api/abc" and _own_path("cpu", text) == "/"
    with pytest.raises(FaultUnavailable, match="no cgroup v1 pids controller"):
        _own_path("pids", text)


def test_a_disk_the_suite_did_not_make_is_never_filled(child):
    with pytest.raises(FaultUnavailable, match=r"fills no shared one: run .* -D pg_disk_mb=256"):
        DiskFull(child).inject()
    child.disk_path = Path("/tmp")
    with pytest.raises(FaultUnavailable, match="is not the tmpfs the suite mounted"):
        DiskFull(child).inject()
    assert not (Path("/tmp") / FILLER).exists()


def test_a_cpu_hog_without_stress_ng_is_refused_with_how_to_install_it(child, monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FaultUnavailable, match=r"stress-ng is not installed: apt-get install stress-ng"):
        CpuHog(child, work_dir=tmp_path).inject()


def test_a_service_without_processes_of_its_own_is_refused():
    @dataclass
    class Attached:
        name: str = "api"

    with pytest.raises(FaultUnavailable, match="not a process or container the suite started"):
        DescriptorLimit(Attached(), files=16).inject()  # type: ignore[arg-type]


# -- the mechanisms on real processes, cgroups and filesystems -------------------------------------------


def test_what_postgres_did_is_read_from_its_log_in_order():
    log = (
        'PANIC:  could not write to file "pg_wal/xlogtemp.7": No space left on device\n'
        "LOG:  terminating any other active server processes\n"
        "LOG:  database system is ready to accept connections\n"
    )
    said = what_postgres_did(log)
    assert said.startswith("writes failed with ENOSPC; a PANIC (a WAL write failed); the postmaster restarted")
    assert 'first PANIC: "could not write to file' in said
    assert what_postgres_did("LOG:  checkpoint complete\n") == ""


@needs_root
def test_the_disk_fault_fills_the_suites_tmpfs_to_enospc_and_the_heal_frees_it(child, tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, 8)
    try:
        assert fstype_of(disk) == "tmpfs" and disk in mounts_below(tmp_path)
        child.disk_path = disk
        fault = DiskFull(child)
        fault.inject()
        try:
            with pytest.raises(OSError, match="No space left on device"):
                (disk / "one-more").write_bytes(b"x" * 65536)
            assert fault.filled > 6 * 1024 * 1024
        finally:
            fault.heal()
        fault.heal()  # idempotent
        (disk / "one-more").write_bytes(b"x" * 65536)
        assert not (disk / FILLER).exists()
        assert "PostgreSQL: writes failed with ENOSPC; a PANIC" in fault.heal_note
    finally:
        unmount(disk)
    assert fstype_of(disk) is None


@needs_root
def test_the_descriptor_limit_binds_every_process_and_the_heal_gives_each_its_own_back():
    service = Child(
        argv=[sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"]
    )
    try:
        wait_until(lambda: len(service.pids()) == 2, 10, "the child's own child")
        before = {pid: resource.prlimit(pid, resource.RLIMIT_NOFILE) for pid in service.pids()}
        fault = DescriptorLimit(service, files=16)  # type: ignore[arg-type]
        fault.inject()
        for pid, (_soft, hard) in before.items():
            assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (16, hard)
        fault.heal()
        fault.heal()
        assert {pid: resource.prlimit(pid, resource.RLIMIT_NOFILE) for pid in service.pids()} == before
    finally:
        service.close()


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 24))
    return False


@needs_root
def test_another_users_process_is_limited_as_that_user_and_refused_in_one_line_without_the_tools(monkeypatch):
    service = Child(argv=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "60"])
    try:
        pid = service.pids()[0]
        wait_until(lambda: "65534" in Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0], 10, "setuid")
        before = descriptor_limit(pid)
        fault = DescriptorLimit(service, files=16)  # type: ignore[arg-type]
        fault.inject()  # as root: directly with CAP_SYS_RESOURCE, else as the process's own user (setpriv)
        assert descriptor_limit(pid) == (16, before[1])
        fault.heal()
        assert descriptor_limit(pid) == before
        if not _has_cap_sys_resource():
            monkeypatch.setattr(shutil, "which", lambda name: None)
            with pytest.raises(FaultUnavailable, match=r"needs CAP_SYS_RESOURCE, or root with setpriv and prlimit"):
                DescriptorLimit(service, files=16).inject()  # type: ignore[arg-type]
    finally:
        service.close()


@needs_v1
def test_a_cpu_limit_throttles_the_service_and_the_heal_moves_it_back_out():
    busy = Child(argv=[sys.executable, "-c", "while True: pass"])
    try:
        home = cgroup_of(busy.pids()[0], "cpu")
        fault = CpuLimit(busy, percent=10)  # type: ignore[arg-type]
        fault.inject()
        cgroup = fault._cgroup
        assert cgroup is not None and cgroup.path is not None and cgroup.path.name.startswith(PREFIX)
        assert cgroup.read("cpu.cfs_quota_us") == "10000" and busy.pids()[0] in cgroup.members()
        assert fault.residue() == {"kind": "cgroup", "host": True, "path": str(cgroup.path)}
        wait_until(lambda: int(cgroup.read("cpu.stat").split("nr_throttled ")[1].split()[0]) > 2, 10, "throttling")
        path = cgroup.path
        fault.heal()
        fault.heal()
        assert not path.exists() and cgroup_of(busy.pids()[0], "cpu") == home
        assert "the kernel throttled api in" in fault.heal_note
    finally:
        busy.close()


@needs_v1
def test_a_memory_limit_below_what_the_service_holds_restarts_it_under_the_limit(child):
    resident = lambda: int(Path(f"/proc/{child.pids()[0]}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")  # noqa: E731
    wait_until(lambda: resident() > 4 << 20, 10, "the child's interpreter up")
    fault = MemoryLimit(child, megabytes=1)  # type: ignore[arg-type]
    fault.inject()
    try:
        assert fault.restarted_under_limit and child.killed == 1  # its restart policy's new process is kept in
        assert fault._cgroup is not None and fault._cgroup.read("memory.limit_in_bytes") == str(1024 * 1024)
    finally:
        fault.heal()
    fault.heal()
    assert "held more than the limit and was restarted under it" in fault.heal_note
    assert fault.heal_note.endswith("; restarted without the limit") and child.restarts == 1  # once: idempotent


@needs_v1
def test_a_process_that_outgrows_its_memory_limit_is_oom_killed(child):
    grower = Child(
        argv=[
            sys.executable,
            "-c",
            "import time\nx = []\nwhile True:\n    x.append(bytearray(1 << 20)); time.sleep(0.005)",
        ]
    )
    try:
        fault = MemoryLimit(grower, megabytes=400)  # type: ignore[arg-type]
        fault.inject()
        assert not fault.restarted_under_limit
        wait_until(lambda: grower.proc.poll() is not None, 30, "the OOM kill")  # type: ignore[union-attr]
        fault.heal()
        assert grower.proc.returncode == -signal.SIGKILL and fault.oom_kills >= 1  # type: ignore[union-attr]
    finally:
        grower.close()


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng is not installed")
def test_a_cpu_hog_runs_its_workers_until_the_heal_kills_them_all(child, tmp_path):
    hog = CpuHog(child, work_dir=tmp_path, workers=2, max_seconds=30)  # type: ignore[arg-type]
    hog.inject()
    assert hog._proc is not None
    tree = [hog._proc.pid, *descendants(hog._proc.pid)]
    assert len(tree) >= 3
    hog.heal()
    hog.heal()
    wait_until(lambda: all(_gone(pid) for pid in tree), 10, "the hog's workers' exit")
    assert hog.heal_note.startswith("stress-ng ran 2 CPU workers for")


@needs_v1
def test_a_cgroup_a_killed_run_left_is_healed_from_its_kept_residue(child, tmp_path):
    cgroup = ChildCgroup("cpu", "api")
    cgroup.create()
    cgroup.add(child.pids())
    (tmp_path / "residues").mkdir()
    residue = {"kind": "cgroup", "host": True, "path": str(cgroup.path)}
    database = {"kind": "read_only", "database": "elsewhere"}
    (tmp_path / "residues" / "run-x.json").write_text(json.dumps([residue, database]))
    done = heal_host_residues(tmp_path)
    assert done == [
        f"removed the cgroup {cgroup.path}, its processes moved to {cgroup.path.parent} (left by the killed run-x)"
    ]  # type: ignore[union-attr]
    assert not cgroup.planned_path().exists() and cgroup_of(child.pids()[0], "cpu") == cgroup.planned_path().parent
    assert json.loads((tmp_path / "residues" / "run-x.json").read_text()) == [database]  # for its database's run


def test_only_a_cgroup_the_suite_named_is_removed_from_a_residue(tmp_path):
    (tmp_path / "residues").mkdir()
    (tmp_path / "residues" / "run-y.json").write_text(
        json.dumps([{"kind": "cgroup", "host": True, "path": "/sys/fs/cgroup/cpu/docker"}])
    )
    with pytest.raises(Exception, match="is not a cgroup the suite makes"):
        heal_host_residues(tmp_path)


# -- after SIGKILL of the suite: the reaper unmounts, the next run removes the cgroup -------------------------

LONG_LIMIT = """Feature: a long CPU limit
  Scenario: The API limited for a long time
    Given the stack is healthy
    And a steady load of 20 requests per second
    When the api CPU is limited to 50% for 60 seconds
"""

HEALTHY = """Feature: the next run
  Scenario: The stack is healthy
    Given the stack is healthy
"""


@needs_v1
def test_a_killed_suite_leaves_its_cgroup_for_the_next_run_and_its_disk_to_the_reaper(tmp_path):
    work_root = Path("/tmp/chaos-suite-tests") / f"resources-{uuid.uuid4().hex[:8]}"
    work_root.mkdir(parents=True)
    work_root.parent.chmod(0o755)
    behave = start_behave(project_with(tmp_path, "long.feature", LONG_LIMIT), work_root, "-D", "pg_disk_mb=128")

    def open_cgroup():
        if behave.poll() is not None:
            raise AssertionError(
                f"behave exited with {behave.returncode}: {(work_root / 'behave.out').read_text()[-2000:]}"
            )
        for journal in work_root.glob("run-*/faults.json"):
            for fault in json.loads(journal.read_text() or "{}").get("open_faults", []):
                if (fault.get("residue") or {}).get("kind") == "cgroup":
                    return journal.parent, Path(fault["residue"]["path"])
        return None

    try:
        run_dir, cgroup = wait_until(
            open_cgroup, 90, "the CPU limit being injected", interval=0.1, retry_on=(ValueError, OSError)
        )
        assert cgroup.is_dir() and fstype_of(run_dir / "disk-postgres") == "tmpfs"
    finally:
        os.killpg(behave.pid, signal.SIGKILL)
        behave.wait()
    # the reaper kills the run's processes and unmounts its disk; the cgroup is left, empty
    wait_until(lambda: fstype_of(run_dir / "disk-postgres") is None, 30, "the reaper unmounting the run's disk")
    assert cgroup.is_dir()
    wait_until(lambda: not (cgroup / "cgroup.procs").read_text().split(), 30, "the run's processes killed")
    # the next run, in the same work root, heals what the killed one left before it starts its stack
    second = start_behave(project_with(tmp_path / "next", "healthy.feature", HEALTHY), work_root)
    assert second.wait(timeout=180) == 0, (work_root / "behave.out").read_text()[-3000:]
    output = (work_root / "behave.out").read_text()
    assert (
        f"removed the cgroup {cgroup}, its processes moved to {cgroup.parent} (left by the killed {run_dir.name})"
        in output
    ), output[-3000:]
    assert not cgroup.exists()
    shutil.rmtree(work_root, ignore_errors=True)


# -- the features end to end -------------------------------------------------------------------------------


@needs_v1
def test_the_resource_features_pass_against_the_reference_api(tmp_path):
    run = run_behave(tmp_path, "-D", "pg_disk_mb=256", RESOURCES)
    assert run.returncode == 0, run.output[-6000:]
    assert "6 scenarios passed, 0 failed" in run.output, run.output[-3000:]  # descriptors.feature: the 6th
    assert not leftovers(run)
    assert not list(Path(CGROUP_ROOT / "cpu").rglob(f"{PREFIX}*")), "a limit's cgroup outlived its heal"


@needs_root
def test_on_docker_the_resource_features_pass_against_the_reference_api(tmp_path):
    require_docker()
    run = run_behave(tmp_path, "-D", "backend=docker", "-D", "pg_disk_mb=256", RESOURCES)
    assert run.returncode == 0 and re.search(r"\d+ scenarios passed, 0 failed", run.output), run.output[-6000:]
    assert "passed  With its database out of disk space the API answers" in run.output, run.output[-3000:]
    assert "Traceback" not in run.output
    assert not leftovers(run)
    assert not [point for run_dir in run.run_dirs for point in mounts_below(run_dir)], "the run's disk is mounted"


SHORT_DISK_FULL = """Feature: disk full without a bounded disk
  Scenario: The database out of disk space
    Given the stack is healthy
    When postgres runs out of disk space for 4 seconds
"""


@pytest.mark.parametrize("backend", ["process", "docker"])
def test_the_disk_fault_without_a_bounded_disk_fails_its_scenario_in_one_line(tmp_path, backend):
    if backend == "docker":
        require_docker()
    project = project_with(tmp_path, "disk.feature", SHORT_DISK_FULL)  # no load: the refusal is what is judged
    run = run_behave(tmp_path, "-D", f"backend={backend}", cwd=project)
    assert run.returncode == 1 and "0 scenarios passed, 1 failed" in run.output, run.output[-3000:]
    assert (
        "ASSERT FAILED: postgres's data directory is not on a filesystem the suite made, and the suite fills no"
        " shared one: run on the process, docker or compose backend as root with -D pg_disk_mb=256" in run.output
    ), run.output[-3000:]
    assert "Traceback" not in run.output


BAD_DISK_SIZES = {
    "lots": "pg_disk_mb='lots' (from -D pg_disk_mb) is not a whole number",
    "16": "pg_disk_mb=16 is too small for a PostgreSQL cluster and its WAL; use 0 (off) or 64 or more",
}


def test_a_bad_pg_disk_mb_is_one_line_saying_what_is_wrong():
    for value, message in BAD_DISK_SIZES.items():
        with pytest.raises(SettingsError) as caught:
            load_settings({"pg_disk_mb": value, "backend": "docker"})
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("backend", "value"), [("process", "lots"), ("docker", "16")])
def test_a_bad_pg_disk_mb_stops_behave_in_one_line_before_anything_starts(tmp_path, backend, value):
    run = run_behave(tmp_path, "-D", f"backend={backend}", "-D", f"pg_disk_mb={value}", f"{RESOURCES}/disk.feature")
    assert f"chaos-suite: {BAD_DISK_SIZES[value]}" in run.output and "Traceback" not in run.output, run.output[-3000:]
    assert run.returncode != 0 and run.run_dirs == []


def test_a_bounded_disk_on_docker_without_root_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ServiceError, match=r"needs root to mount: run the suite as root, or set pg_disk_mb=0$"):
        mount_data_disk(None, "image", {}, tmp_path, 64)  # type: ignore[arg-type]  # refused before the engine is asked
    assert fstype_of(tmp_path / "disk-postgres") is None


def _in_container(container, *argv: str) -> tuple[int, str]:
    done = container.exec_run(list(argv), user="postgres")
    return done.exit_code, done.output.decode(errors="replace")


@needs_root
def test_on_docker_the_disk_fault_fills_the_bound_tmpfs_and_a_restart_keeps_the_data(tmp_path):
    """PostgreSQL's container writes to the suite's host tmpfs: the fault fills it from the host, the container
    sees ENOSPC, the heal frees it; a crash restart keeps the cluster (Docker's own tmpfs mount would lose it)."""
    require_docker()
    run_dir = tmp_path / f"run-disk-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    stack = start_docker_stack(Settings(backend="docker", pg_disk_mb=64), run_dir)
    try:
        postgres = stack.services["postgres"]
        disk = run_dir / "disk-postgres"
        assert postgres.disk_path == disk and fstype_of(disk) == "tmpfs"
        container = postgres._inspect()
        assert [m["Source"] for m in container.attrs["Mounts"] if m["Destination"] == PG_DATA_MOUNT] == [str(disk)]
        assert (disk / "pgdata" / "PG_VERSION").is_file()  # the cluster is on the host's tmpfs
        with psycopg2.connect(stack.admin_dsn, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        fault = DiskFull(postgres)
        fault.inject()
        try:
            code, said = _in_container(
                container, "dd", "if=/dev/zero", f"of={PG_DATA_MOUNT}/probe", "bs=64k", "count=1"
            )
            assert code != 0 and "No space left on device" in said, said
        finally:
            fault.heal()
        fault.heal()  # idempotent
        assert not (disk / FILLER).exists() and fault.filled > 8 * 1024 * 1024
        assert fault.heal_note.startswith("the filler took ")
        assert _in_container(container, "dd", "if=/dev/zero", f"of={PG_DATA_MOUNT}/probe", "bs=64k", "count=1")[0] == 0
        restarts = postgres.restarts
        postgres.kill()  # a crash: the engine's restart policy starts the container again on the same mount
        wait_until(lambda: postgres.restarts > restarts, 30, "the engine restarting postgres")
        postgres.wait_ready(30)
        with psycopg2.connect(stack.admin_dsn, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT n FROM kept")
            assert cur.fetchall() == [(42,)]
    finally:
        stack.close()
    assert fstype_of(disk) is None and postgres.status() == "missing"


LONG_DISK_FULL = """Feature: a long disk full
  Scenario: The database out of disk space for a long time
    Given the stack is healthy
    When postgres runs out of disk space for 120 seconds
"""


@needs_root
def test_on_docker_a_run_killed_mid_disk_fault_is_healed_by_the_next_run_even_without_its_reaper(tmp_path):
    """The fault's only residue is its filler on the run's own tmpfs: unmounting that (and removing the container
    that binds it) heals it, so the journal needs no residue; the next run does both when the reaper died too."""
    require_docker()
    work_root = Path("/tmp/chaos-suite-tests") / f"disk-{uuid.uuid4().hex[:8]}"
    work_root.mkdir(parents=True)
    work_root.parent.chmod(0o755)
    args = ("-D", "backend=docker")
    behave = start_behave(
        project_with(tmp_path, "long.feature", LONG_DISK_FULL), work_root, *args, "-D", "pg_disk_mb=64"
    )

    def filled():
        if behave.poll() is not None:
            raise AssertionError(
                f"behave exited with {behave.returncode}: {(work_root / 'behave.out').read_text()[-2000:]}"
            )
        for filler in work_root.glob(f"run-*/disk-postgres/{FILLER}"):
            if os.statvfs(filler.parent).f_bavail == 0:
                return filler.parent.parent
        return None

    client = docker_client()
    try:
        run_dir = wait_until(filled, 120, "the disk being filled", interval=0.1, retry_on=(OSError,))
        reaper = reaper_of(run_dir)
        assert reaper is not None
        os.kill(reaper, signal.SIGKILL)  # a power cut: nothing of the run sweeps up after it
        os.killpg(behave.pid, signal.SIGKILL)
        behave.wait()
        labelled = {"label": f"{RUN_LABEL}={run_dir.name}"}
        assert fstype_of(run_dir / "disk-postgres") == "tmpfs" and client.containers.list(filters=labelled)
        second = start_behave(project_with(tmp_path / "next", "healthy.feature", HEALTHY), work_root, *args)
        assert second.wait(timeout=180) == 0, (work_root / "behave.out").read_text()[-3000:]
        output = (work_root / "behave.out").read_text()
        assert f"chaos-suite-{run_dir.name}-postgres" in output, output[-3000:]  # named among what was removed
        assert fstype_of(run_dir / "disk-postgres") is None and not run_dir.exists()
        assert client.containers.list(all=True, filters=labelled) == []
    finally:
        if behave.poll() is None:
            os.killpg(behave.pid, signal.SIGKILL)
        client.close()
    shutil.rmtree(work_root, ignore_errors=True)


@dataclass(frozen=True)
class Variant:
    name: str
    feature: str
    scenario: str
    message: str


VARIANTS = [
    Variant("cpu_heavy", "cpu", "CPU quota", r"\d+ requests? took longer than 4 s"),
    Variant(  # at nice 19 beside the 5 s hog: 83-100 of 100 requests over 1 s, the slowest 4.5-5 s (reference: 0.04-0.18 s)
        "low_priority",
        "cpu",
        "CPU hog",
        r"\d+ of the \d+ requests started while the fault lasted .* took longer than 1 s",
    ),
    Variant("leaky_cache", "memory", "with headroom", r"the error rate was [\d.]+%, not below 1%"),
    Variant(
        "status_500", "disk", "disk space", r"failed requests? not answered with 503: \d+ with another status \(500 x"
    ),
]


#: how a run that failed before its fault ends: the API served nothing of the load's baseline
BASELINE_STARVED = "baseline, before any fault"


@needs_root
def test_on_docker_the_disk_scenario_fails_against_a_variant_lacking_its_protection(tmp_path):
    require_docker()
    variant = next(v for v in VARIANTS if v.feature == "disk")
    stack = BROKEN / f"{variant.name}.toml"
    run = run_behave(
        tmp_path,
        "-D",
        "backend=docker",
        "-D",
        f"stack_file={stack}",
        "-D",
        "pg_disk_mb=256",
        f"{RESOURCES}/disk.feature",
    )
    assert run.returncode == 1 and "0 scenarios passed, 1 failed" in run.output, run.output[-4000:]
    assert re.search(variant.message, run.output), run.output[-4000:]


@needs_v1
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_each_resource_scenario_fails_against_a_variant_lacking_its_protection(tmp_path, variant):
    stack = BROKEN / f"{variant.name}.toml"
    args = ("-D", f"stack_file={stack}", "-D", "pg_disk_mb=256", "-n", variant.scenario)
    run = run_behave(tmp_path, *args, f"{RESOURCES}/{variant.feature}.feature")
    if BASELINE_STARVED in run.output:
        # the fault never ran, so nothing was judged: low_priority, at the lowest CPU weight, is starved by any
        # process busy on both CPUs, and another test run on the machine is one (once in 9 runs here, load
        # average 9 from other runs; pytest alone runs one test at a time); once more, as a quieter moment
        run = run_behave(tmp_path, *args, f"{RESOURCES}/{variant.feature}.feature")
    assert run.returncode == 1, run.output[-4000:]
    assert "1 scenario passed" not in run.output
    assert re.search(variant.message, run.output), run.output[-4000:]
