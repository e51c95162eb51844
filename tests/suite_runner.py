"""Running the behave suite as a user would, from a test, and checking what it left behind."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from support.backends.reaper import reaper_of
from support.core.ports import listening_sockets
from support.core.run_dirs import RUN_MARKER, marked_processes
from support.core.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
BROKEN = REPO / "tests" / "broken_apis"

#: the work roots this test session made: removed with their Docker volumes when the session ends
_MADE: list[Path] = []


def _remember(work_root: Path) -> Path:
    """Keep ``work_root`` (and what its runs kept) for inspection until the test session ends."""
    if not _MADE:
        atexit.register(_remove_what_the_runs_kept)
    _MADE.append(work_root)
    return work_root


def _remove_what_the_runs_kept() -> None:
    """Leave the machine as the session found it: the kept run directories and the Docker volumes of
    those runs (``keep_work_dir=true`` keeps both; a volume is labelled with its run directory's name)."""
    run_ids = {run_dir.name for root in _MADE for run_dir in root.glob("run-*")}
    if run_ids:
        _remove_volumes(run_ids)
    for root in _MADE:
        shutil.rmtree(root, ignore_errors=True)


def _remove_volumes(run_ids: set[str]) -> None:
    try:
        import docker

        from support.backends.docker.labels import RUN_LABEL

        client = docker.from_env(timeout=20)
        volumes = client.volumes.list(filters={"label": RUN_LABEL})
    except Exception:  # noqa: BLE001 - no Docker SDK or no engine: no volume was made either
        return
    for volume in volumes:
        if (volume.attrs.get("Labels") or {}).get(RUN_LABEL) in run_ids:
            try:
                volume.remove(force=True)
            except Exception as error:  # noqa: BLE001 - say what is left, do not fail the session's end
                print(f"suite_runner: could not remove Docker volume {volume.name}: {error}", file=sys.stderr)


@dataclass
class BehaveRun:
    returncode: int
    output: str
    run_dirs: list[Path]


def project_with(tmp_path: Path, feature_name: str, feature_text: str) -> Path:
    """A project directory that shares the suite's steps and hooks but has its own feature."""
    project = tmp_path / "project"
    (project / "features").mkdir(parents=True)
    for name in ("steps", "environment.py", "behave.ini"):
        (project / name).symlink_to(REPO / name)
    (project / "features" / feature_name).write_text(feature_text)
    return project


def _behave_argv(work_root: Path, args: tuple[str, ...]) -> list[str]:
    """behave as the tests run it: plain output, no JUnit, the run directory kept under ``work_root``."""
    return [sys.executable, "-m", "behave", "--no-capture", "-f", "plain", "--no-junit",
            "-D", f"work_root={work_root}", "-D", "keep_work_dir=true", *args]  # fmt: skip


def _behave_env() -> dict[str, str]:
    """The test's environment without the user's CHAOS_ settings, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_behave(
    work_root: Path, *args: str, timeout: float = 900, cwd: Path = REPO, env: dict[str, str] | None = None
) -> BehaveRun:
    """``behave ARGS`` (from ``cwd``, the repository by default) in a fresh work root, run dirs kept; ``env`` adds variables.

    The work root is made under /tmp whatever ``work_root`` says, since PostgreSQL runs as an
    unprivileged user who cannot enter pytest's private temporary directories.
    """
    work_root = _remember(Path("/tmp/chaos-suite-tests") / f"{work_root.parent.name}-{uuid.uuid4().hex[:8]}")
    work_root.mkdir(parents=True)
    work_root.parent.chmod(0o755)
    done = subprocess.run(
        _behave_argv(work_root, args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**_behave_env(), **(env or {})},  # env: extra variables for this run
    )
    return BehaveRun(done.returncode, done.stdout + done.stderr, sorted(work_root.glob("run-*")))


def start_behave(project: Path, work_root: Path, *args: str) -> subprocess.Popen:
    """``behave ARGS`` from ``project`` in the background, in its own session, output in ``work_root/behave.out``."""
    _remember(work_root)
    return subprocess.Popen(
        _behave_argv(work_root, args),
        # output to a file, not a pipe nobody reads until the end: a full pipe would stall the run
        cwd=project,
        env=_behave_env(),
        stdout=open(work_root / "behave.out", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # a shell's background job (nohup ... &) ignores SIGINT and its children inherit that; a user's
        # terminal does not, and the tests send SIGINT as a terminal's Ctrl-C would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_reaped(run_dir: Path, seconds: float = 15.0) -> None:
    """Wait up to ``seconds`` s for the reaper of a killed run to remove its processes and exit.

    The reaper writes its note into the run dir once it has swept: a sweep (the next run's
    ``clean_leftovers``) before it exits could race that write and leave the directory behind.
    """
    wait_until(
        lambda: not marked_processes(run_dir) and reaper_of(run_dir) is None,
        seconds,
        "the reaper removing the killed run's processes and exiting",
    )


def leftovers(run: BehaveRun) -> list[str]:
    """Processes still marked with one of the run's directories, and its ports still taken."""
    found = []
    marks = {str(d).encode() for d in run.run_dirs}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(RUN_MARKER.encode() + b"=") and entry.split(b"=", 1)[1] in marks:
                found.append(f"process {pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}")
    for run_dir in run.run_dirs:
        info = json.loads((run_dir / "run.json").read_text())
        for name, address in info.get("addresses", {}).items():
            port = int(address.rsplit(":", 1)[1])
            if port in listening_ports():
                found.append(f"port {port} of {name} still listening")
    return found


def listening_ports() -> set[int]:
    """TCP ports something listens on (IPv4 and IPv6)."""
    return {port for port, _ in listening_sockets()}
