"""Control groups (cgroup v1) the suite makes below its own, to limit one service's CPU or memory.

A :class:`ChildCgroup` is a directory under the suite's own cgroup of one
controller (``/sys/fs/cgroup/cpu/<the suite's>/chaos-...``). Processes are moved in
by writing their PIDs to ``cgroup.procs`` and moved back out to the parent (the
suite's cgroup, where every process the suite starts is born) before the
directory is removed. A cgroup is a residue of the host: a run killed while it
exists leaves it behind, so its path goes in the journal and the next run
removes it (:mod:`support.faults.host_residues`).

Only cgroup v1 is driven here (the machine this suite is built on has v1);
:func:`unavailable` says in one line why a controller cannot be used.
"""

from __future__ import annotations

import os
import secrets
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CGROUP_ROOT", "ChildCgroup", "FaultUnavailable", "cgroup_of", "unavailable", "remove_cgroup"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "chaos-suite-"


class FaultUnavailable(AssertionError):
    """This machine or backend cannot do a fault (no root, no controller, no tool); the message says
    in one line what is missing and how to get it.

    An ``AssertionError``: behave fails the step with this one line, no traceback.
    """


def _own_path(controller: str, proc_cgroup: str) -> str:
    """The path of the cgroup of ``controller`` in a ``/proc/PID/cgroup`` text ("/" when at the root)."""
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path or "/"
    raise FaultUnavailable(f"no cgroup v1 {controller} controller holds this process")


def cgroup_of(pid: int | str, controller: str, root: Path = CGROUP_ROOT) -> Path:
    """The directory of the ``controller`` cgroup that process ``pid`` is in ("self": this process)."""
    text = Path(f"/proc/{pid}/cgroup").read_text()
    return root / controller / _own_path(controller, text).lstrip("/")


def unavailable(controller: str, root: Path = CGROUP_ROOT) -> str:
    """Why a child cgroup of ``controller`` cannot be made here, in one line with the fix; "" when it can."""
    if (root / "cgroup.controllers").exists():
        return (
            f"this machine has cgroup v2 only and the suite drives the v1 {controller} controller:"
            " run on a machine with cgroup v1 (systemd.unified_cgroup_hierarchy=0) or use -D backend=docker"
        )
    if not (root / controller / "cgroup.procs").exists():
        return f"no cgroup v1 {controller} controller is mounted at {root / controller}: mount it, or use -D backend=docker"
    try:
        own = cgroup_of("self", controller, root)
    except (OSError, FaultUnavailable) as error:
        return f"cannot tell which {controller} cgroup the suite is in ({error})"
    if os.geteuid() != 0 or not os.access(own, os.W_OK):
        return f"limiting a service's {controller} needs write access to {own}: run the suite as root"
    return ""


@dataclass
class ChildCgroup:
    """A cgroup of ``controller`` made below the suite's own; ``path`` once :meth:`create` ran."""

    controller: str
    label: str
    root: Path = CGROUP_ROOT
    path: Path | None = None
    _name: str = field(default_factory=lambda: secrets.token_hex(4), repr=False)

    def planned_path(self) -> Path:
        """Where :meth:`create` makes the cgroup (known before, for the journal)."""
        if self.path is None:
            self.path = cgroup_of("self", self.controller, self.root) / f"{PREFIX}{self.label}-{self._name}"
        return self.path

    def create(self) -> Path:
        """Make the cgroup (or take the one a failed attempt made); its path."""
        path = self.planned_path()
        path.mkdir(exist_ok=True)
        return path

    def write(self, name: str, value: int | str) -> None:
        """Write ``value`` to the cgroup's file ``name`` (``cpu.cfs_quota_us``, ``memory.limit_in_bytes``)."""
        (self.planned_path() / name).write_text(f"{value}\n")

    def read(self, name: str) -> str:
        """The cgroup's file ``name``, stripped."""
        return (self.planned_path() / name).read_text().strip()

    def has(self, name: str) -> bool:
        return (self.planned_path() / name).exists()

    def members(self) -> set[int]:
        """PIDs in the cgroup now."""
        path = self.planned_path()
        if not path.is_dir():
            return set()
        return {int(pid) for pid in (path / "cgroup.procs").read_text().split()}

    def add(self, pids: list[int]) -> list[int]:
        """Move ``pids`` in (those not yet in it); the ones moved (a process that is gone is skipped)."""
        moved = []
        present = self.members()
        for pid in pids:
            if pid in present:
                continue
            try:
                (self.planned_path() / "cgroup.procs").write_text(f"{pid}\n")
                moved.append(pid)
            except ProcessLookupError:
                pass
            except OSError as error:
                if error.errno != 3:  # ESRCH: the process exited meanwhile
                    raise
        return moved

    def remove(self) -> None:
        """Move every process back to the parent cgroup and remove the directory; idempotent."""
        if self.path is not None:
            remove_cgroup(self.path)


def remove_cgroup(path: Path) -> None:
    """Move the processes of cgroup ``path`` to its parent and remove it; a no-op once it is gone.

    A process that exits while it is moved is skipped; the directory can only
    go once it holds no process, so the move is repeated a few times for
    processes that were forked meanwhile.
    """
    for _ in range(20):
        if not path.is_dir():
            return
        for pid in (path / "cgroup.procs").read_text().split():
            with suppress(ProcessLookupError):
                (path.parent / "cgroup.procs").write_text(f"{pid}\n")
        try:
            path.rmdir()
            return
        except OSError as error:
            if error.errno != 16:  # EBUSY: a process is still in it (forked while we moved)
                raise
    path.rmdir()
