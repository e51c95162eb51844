"""A service that cannot open more files: its processes' descriptor limit (``RLIMIT_NOFILE``) lowered.

The limit is set with prlimit(2) (what ``prlimit --nofile`` calls) on every
process of the service: on the process backend the PIDs of its tree, on
Docker the host PIDs of the container's processes (``docker inspect``'s main
PID and the processes below it). A process of another user (the container's
``app``) is changed by ``prlimit`` run as that user (``setpriv``, as root):
root without CAP_SYS_RESOURCE may not change it directly. A process that
holds more descriptors than the limit keeps them; the next ``open``, ``socket``
or ``accept`` fails with EMFILE. The heal gives each process that still runs
its limits back (a process that exited meanwhile, and one its restart policy
started since, has its own). Nothing outlives the run: the limits die with
the processes, which the reaper kills.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.core.run_dirs import process_start_time
from support.faults.base import FaultHadNoEffect
from support.faults.cgroups import FaultUnavailable
from support.faults.process import ServiceFault

__all__ = ["DescriptorLimit", "descriptor_limit", "open_descriptors", "set_descriptor_limit"]


def _ids(pid: int) -> tuple[int, int]:
    """The user and group of process ``pid`` when its real, effective and saved ids agree (else PermissionError)."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.split()
    uids, gids = {int(u) for u in status["Uid"][:3]}, {int(g) for g in status["Gid"][:3]}
    if len(uids) != 1 or len(gids) != 1:
        raise PermissionError(f"process {pid} has mixed user ids {sorted(uids)}; its limits cannot be changed as it")
    return uids.pop(), gids.pop()


def set_descriptor_limit(pid: int, soft: int, hard: int) -> None:
    """Set ``RLIMIT_NOFILE`` of process ``pid`` to ``soft``/``hard`` (prlimit(2)).

    A process of another user (a container's ``app``, PostgreSQL's ``nobody``) may have its limits
    changed by a process of its own user, without CAP_SYS_RESOURCE: then ``prlimit`` runs as that
    user and group (``setpriv``, as root). Raises PermissionError (one line) when neither works,
    ProcessLookupError when the process is gone.
    """
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        return
    except PermissionError:
        if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("prlimit") is None:
            raise PermissionError(
                "prlimit on a process of another user needs CAP_SYS_RESOURCE, or root with setpriv and"
                " prlimit (util-linux) to act as that user"
            ) from None
    uid, gid = _ids(pid)
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "prlimit",
            f"--pid={pid}",
            f"--nofile={soft}:{hard}",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        if not Path(f"/proc/{pid}").exists():
            raise ProcessLookupError(pid)
        raise PermissionError(f"prlimit as user {uid} failed: {' '.join(done.stderr.split())}")


def descriptor_limit(pid: int) -> tuple[int, int]:
    """The soft and hard ``RLIMIT_NOFILE`` of process ``pid``, read from ``/proc/PID/limits`` (which anyone may
    read, where prlimit(2) asks for the same rights as a change); ProcessLookupError when it is gone."""
    try:
        text = Path(f"/proc/{pid}/limits").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            unlimited = resource.RLIM_INFINITY
            return (unlimited if soft == "unlimited" else int(soft), unlimited if hard == "unlimited" else int(hard))
    raise ProcessLookupError(pid)


def open_descriptors(pid: int) -> int | None:
    """How many descriptors process ``pid`` holds now (``/proc/PID/fd``); None when that cannot be read."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass
class DescriptorLimit(ServiceFault):
    """Every process of ``service`` may hold at most ``files`` open descriptors (its soft limit; the hard one stays).

    ``held`` is what each process held when the limit was set (PID: descriptors), for the evidence.
    """

    files: int = 64
    held: dict[int, int] = field(default_factory=dict)
    _was: dict[int, tuple[int, int, int | None]] = field(default_factory=dict, repr=False)  # pid: soft, hard, start

    @property
    def name(self) -> str:
        return f"open files limited to {self.files}"

    def inject(self) -> None:
        if not hasattr(self.service, "pids"):
            raise FaultUnavailable(
                f"{self.service.name} is not a process or container the suite started: its limits cannot be changed"
            )
        pids = self.service.pids()
        if not pids:
            raise FaultHadNoEffect(f"{self.service.name} runs no process whose descriptor limit could be lowered")
        for pid in pids:
            try:
                soft, hard = descriptor_limit(pid)
                # before the change: the heal restores it even if this process's change fails half-way
                self._was[pid] = (soft, hard, process_start_time(pid))
                # the soft limit only: raising a hard limit back needs CAP_SYS_RESOURCE, which root in a
                # container may lack, and a heal must always be able to undo what the fault did
                set_descriptor_limit(pid, min(self.files, hard), hard)
            except ProcessLookupError:
                self._was.pop(pid, None)
                continue
            except PermissionError as error:
                self._was.pop(pid, None)
                raise FaultUnavailable(
                    f"the suite may not change the descriptor limit of {self.service.name}'s process {pid}: {error}"
                ) from None
            held = open_descriptors(pid)
            if held is not None:
                self.held[pid] = held
        if not self._was:
            raise FaultHadNoEffect(f"every process of {self.service.name} exited before its limit could be set")
        self.active_since = time.monotonic()

    def heal(self) -> None:
        self.mark_effect_over()
        was, self._was = self._was, {}
        left = {}
        for pid, (soft, hard, started) in was.items():
            if started is not None and process_start_time(pid) != started:
                continue  # exited (its PID may be another process's now): nothing of the fault is left in it
            try:
                set_descriptor_limit(pid, soft, hard)
            except ProcessLookupError:
                continue
            except OSError:
                left[pid] = (soft, hard, started)
        if left:
            self._was = left  # a later heal tries these again
            raise OSError(f"could not give processes {sorted(left)} their descriptor limit back")
        if self.held:
            self.heal_note = f"{self.target}'s processes held {sum(self.held.values())} descriptors under the limit"
