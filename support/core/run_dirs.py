"""Cleaning up after runs that were killed before they could clean up themselves.

Every process a run starts carries ``CHAOS_SUITE_RUN=<run dir>`` in its
environment, and every run dir holds ``run.json`` with the PID of the suite
that owns it. A run dir whose owner is gone is a leftover: its marked
processes are killed (found by the marker, never by name or by a PID that
may have been reused), and the directory is removed. Its open faults die with
its stack on the process and Docker backends; an attached database outlives
the run, so the residues of a dead attached run's open faults (its journal,
``faults.json``) are kept under ``<work_root>/residues/`` until a run against
that database heals them (:func:`support.faults.residues.heal_residues`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from support.core.config import SettingsError
from support.core.mounts import MountError, unmount_below
from support.core.process_tree import descendants

__all__ = [
    "RemovedRuns",
    "child_env",
    "check_work_root",
    "clean_leftovers",
    "marked_processes",
    "owner_record",
    "process_start_time",
    "RUN_MARKER",
]

RUN_MARKER = "CHAOS_SUITE_RUN"
RESIDUES = "residues"  # under the work root: faults that dead runs left in databases that outlive them
#: s a run directory without its ``run.json`` counts as one a starting run is making (runs in parallel
#: share a work root: one's sweep must not take another's directory between its mkdir and its record)
STARTING_GRACE = 10.0


@dataclass
class RemovedRuns:
    """What a clean-up found and removed."""

    run_dirs: list[Path] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"removed {len(self.run_dirs)} leftover run director{'y' if len(self.run_dirs) == 1 else 'ies'}"
            f" and killed {len(self.processes)} leftover process{'' if len(self.processes) == 1 else 'es'}"
        )


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count the fields after its last ")"
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def owner_record(pid: int | None = None) -> dict[str, int | None]:
    """What ``run.json`` records of the suite that owns a run: its PID and that process's start time,
    so that a PID reused by another process is not taken for the owner."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_start": process_start_time(pid)}


def _owner_alive(run_dir: Path) -> bool:
    try:
        record = json.loads((run_dir / "run.json").read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    started = process_start_time(pid)
    if started is None:
        return False
    if record.get("pid_start") is not None:
        return started == record["pid_start"]  # the same PID and start time: the same process
    # a record written before start times were kept: only a Python process can be its owner
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().find(b"python") >= 0
    except OSError:
        return False


def _being_made(run_dir: Path) -> bool:
    try:
        return not (run_dir / "run.json").exists() and time.time() - run_dir.stat().st_mtime < STARTING_GRACE
    except OSError:
        return False


def check_work_root(root: Path) -> None:
    """Make sure the run directories can be made under ``root`` (the ``work_root`` setting), or raise
    :class:`SettingsError` in one line naming the setting and the fix."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as error:
        raise SettingsError(
            f"work_root={str(root)!r} cannot hold the run's directory ({error.strerror or error}); "
            "set work_root to a directory the suite can create and write, such as "
            "/tmp/chaos-suite"
        ) from None


def child_env(run_dir: Path) -> dict[str, str]:
    """A minimal environment for a child process, marked with the run directory.

    The marker lets a later run (or a test) find every process this run
    started, without trusting PIDs that may have been reused.
    """
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env[RUN_MARKER] = str(run_dir)
    return env


def marked_processes(run_dir: Path) -> list[int]:
    """PIDs whose environment carries this run dir's marker (or that of a directory inside it)."""
    mark = f"{RUN_MARKER}={run_dir}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(entry == mark or entry.startswith(mark + b"/") for entry in environ):
            found.append(int(pid))
    return found


def clean_leftovers(work_root: Path) -> RemovedRuns:
    """Kill the processes and remove the directories of dead runs under ``work_root``."""
    result = RemovedRuns()
    if not work_root.is_dir():
        return result
    for run_dir in sorted(work_root.glob("run-*")):
        if _owner_alive(run_dir) or _being_made(run_dir):
            continue
        marked = marked_processes(run_dir)
        # PostgreSQL overwrites its backends' environment with their titles, so they carry no
        # marker: they are found below the marked postmaster, before it dies and they are orphaned
        tree = list(dict.fromkeys(marked + [child for pid in marked for child in descendants(pid)]))
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
                result.processes.append(pid)
            except ProcessLookupError:
                pass
        _keep_residues(run_dir, work_root / RESIDUES)
        with suppress(MountError, OSError):  # a bounded disk it mounted (pg_disk_mb) must not outlive it
            unmount_below(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        result.run_dirs.append(run_dir)
    return result


def _keep_residues(run_dir: Path, into: Path) -> None:
    try:
        attached = json.loads((run_dir / "run.json").read_text()).get("backend") == "attached"
        journal = json.loads((run_dir / "faults.json").read_text())
    except (OSError, ValueError, AttributeError):
        return
    residues = [f["residue"] for f in journal.get("open_faults", []) if isinstance(f, dict) and f.get("residue")]
    # a database of its own is gone with the run; what it left on this machine (a cgroup) is not
    residues = [r for r in residues if attached or (isinstance(r, dict) and r.get("host"))]
    if residues:
        into.mkdir(exist_ok=True)
        (into / f"{run_dir.name}.json").write_text(json.dumps(residues))
