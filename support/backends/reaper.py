"""A reaper that outlives the suite by design, as Testcontainers' Ryuk does.

The suite starts one reaper per run, in a session of its own (so no signal to
the suite's process group or terminal reaches it), and keeps the write end of
a pipe whose read end is the reaper's stdin. When the pipe closes, because the
suite closed it or because the suite died (even of SIGKILL), the reaper
resumes and kills every process of the run (the ``CHAOS_SUITE_RUN`` marker,
and the unmarked processes below them, such as PostgreSQL's backends), removes
the run's containers and networks by label, then exits. Parent-death signals
alone would miss grandchildren and SIGSTOPped processes.

The reaper itself carries no marker: it is not a leftover while it works.
What a power cut leaves (the reaper dies too) the next run cleans
(:func:`support.core.run_dirs.clean_leftovers`, and
:func:`support.backends.docker.labels.remove_leftovers`).

Run as ``python -m support.backends.reaper RUN_DIR [--docker]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from support import REPO_ROOT
from support.backends.docker.labels import RemovedResources
from support.core.mounts import MountError, unmount_below
from support.core.process_tree import descendants
from support.core.run_dirs import RUN_MARKER, marked_processes

__all__ = ["Reaper", "Reaped", "start_reaper", "reap_run", "reaper_of", "describe_removed"]


@dataclass
class Reaped(RemovedResources):
    """What one sweep removed (processes too), and what it could not remove (name: reason)."""

    processes: list[int] = field(default_factory=list)


def describe_removed(removed: dict[str, list]) -> str:
    """What was removed, one clause per kind that is not empty, by singular noun:
    ``{"container": ["a"], "volume": []}`` -> ``"1 container (a)"``; ``"nothing"`` when all are empty."""
    parts = []
    for noun, items in removed.items():
        if not items:
            continue
        plural = _PLURALS.get(noun, noun + "s")
        names = ", ".join(str(item) for item in items[:5]) + (", ..." if len(items) > 5 else "")
        parts.append(f"{len(items)} {noun if len(items) == 1 else plural} ({names})")
    return ", ".join(parts) if parts else "nothing"


_PLURALS = {"process": "processes", "run directory": "run directories"}


def _kill_run_processes(run_dir: Path, into: Reaped) -> None:
    """SIGKILL every marked process of ``run_dir`` and the processes below them, noting each in ``into``."""
    marked = marked_processes(run_dir)
    # the tree is read before any kill: an orphan is reparented away and its parent link is lost
    tree = list(dict.fromkeys(marked + [child for pid in marked for child in descendants(pid)]))
    for sig in (signal.SIGCONT, signal.SIGKILL):  # SIGCONT first: nothing of the run stays frozen
        for pid in tree:
            try:
                os.kill(pid, sig)
                if sig == signal.SIGKILL:
                    into.processes.append(pid)
            except ProcessLookupError:
                pass
            except PermissionError:
                into.failed[f"process {pid}"] = "no permission to signal it"


def _remove_run_containers(run_id: str, into: Reaped) -> None:
    """Remove the containers (paused ones too), volumes (unless kept) and networks labelled with run ``run_id``."""
    import docker

    from support.backends.docker.labels import RUN_LABEL, remove_labelled

    client = docker.from_env(timeout=30)
    try:
        remove_labelled(client, f"{RUN_LABEL}={run_id}", lambda labels: True, into)
    finally:
        client.close()


def reap_run(run_dir: Path, docker_run: str | None = None) -> Reaped:
    """Kill what is left of run ``run_dir`` (processes; with ``docker_run``, that run's containers)."""
    reaped = Reaped()
    _kill_run_processes(run_dir, reaped)
    try:  # a bounded disk the run mounted (pg_disk_mb) holds memory until it is unmounted
        unmount_below(run_dir)
    except (MountError, OSError) as error:
        reaped.failed["mounts"] = " ".join(str(error).split())[:200]
    if docker_run:
        try:
            _remove_run_containers(docker_run, reaped)
        except Exception as error:  # noqa: BLE001 - no engine: nothing of the run can be on it
            reaped.failed["docker"] = " ".join(str(error).split())[:200]
    return reaped


class Reaper:
    """The suite's end of the reaper: closing it (or dying) makes the reaper sweep the run and exit."""

    def __init__(self, process: subprocess.Popen, pipe: int) -> None:
        self._process = process
        self._pipe: int | None = pipe
        self.pid = process.pid

    def close(self, timeout: float = 10.0) -> None:
        """Let the reaper sweep and wait up to ``timeout`` s for it to exit; idempotent."""
        if self._pipe is None:
            return
        pipe, self._pipe = self._pipe, None
        os.close(pipe)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def start_reaper(run_dir: Path, docker: bool = False) -> Reaper:
    """Start the run's reaper; it sweeps ``run_dir``'s processes (and with ``docker`` its containers) once we are gone.

    Returns at once: the reaper needs no readiness, since a pipe closed before it
    reads is an end of file all the same.
    """
    read_end, write_end = os.pipe()  # both non-inheritable: no other child holds the suite's end open
    argv = [sys.executable, "-m", "support.backends.reaper", str(run_dir)] + (["--docker"] if docker else [])
    env = {k: v for k, v in os.environ.items() if k != RUN_MARKER}  # unmarked: not a leftover of the run
    env["PYTHONPATH"] = str(REPO_ROOT)
    try:
        process = subprocess.Popen(
            argv,
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=env,
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return Reaper(process, write_end)


def reaper_of(run_dir: Path) -> int | None:
    """PID of the reaper watching ``run_dir``, or None (read from /proc: tests simulate a power cut with it)."""
    wanted = [b"support.backends.reaper", str(run_dir).encode()]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(part in argv for part in wanted):
            return int(pid)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--docker", action="store_true", help="also remove the run's containers and networks")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the pipe ends a reaper
    while os.read(0, 4096):
        pass  # the suite writes nothing; the read returns empty once every write end is closed
    reaped = reap_run(args.run_dir, args.run_dir.name if args.docker else None)
    if (
        reaped.processes or reaped.containers or reaped.volumes or reaped.networks or reaped.failed
    ) and args.run_dir.is_dir():
        # a killed suite's run dir stays until the next run: the note goes with it (a clean run leaves none)
        failed = "".join(f"; could not remove {name}: {why}" for name, why in reaped.failed.items())
        removed = describe_removed(
            {
                "process": reaped.processes,
                "container": reaped.containers,
                "volume": reaped.volumes,
                "network": reaped.networks,
            }
        )
        (args.run_dir / "reaper.log").write_text(f"reaper: removed {removed}{failed}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
