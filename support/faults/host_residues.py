"""Healing what killed runs left on this machine: the cgroups of their CPU and memory limits.

A run killed by SIGKILL while a limit holds leaves its child cgroup behind
(its processes die with the run: the reaper kills them). The journal
(``faults.json``) records the cgroup's path as the fault's residue
(``{"kind": "cgroup", "host": true, "path": ...}``);
:func:`support.core.run_dirs.clean_leftovers` keeps such residues under
``<work_root>/residues/`` whatever the backend, and the next run heals them
here before it starts its stack. Residues of databases are left for
:func:`support.faults.residues.heal_residues`.
"""

from __future__ import annotations

from pathlib import Path

from support.faults.cgroups import CGROUP_ROOT, PREFIX, remove_cgroup
from support.faults.kept_residues import heal_kept_residues

__all__ = ["heal_host_residues", "heal_host_residue"]


def heal_host_residues(work_root: Path) -> list[str]:
    """Heal every kept residue of this machine (``"host": true``); one line for each heal.

    Raises :class:`support.stack.services.ServiceError` (one line) if a heal fails.
    """
    return heal_kept_residues(
        work_root,
        lambda residue: isinstance(residue, dict) and bool(residue.get("host")),
        heal_host_residue,
        "on this machine",
    )


def heal_host_residue(residue: dict) -> str:
    """Undo one residue of this machine; what was done. Only a cgroup the suite named is ever removed."""
    kind = residue.get("kind")
    if kind == "cgroup":
        path = Path(str(residue["path"]))
        if CGROUP_ROOT not in path.parents or not path.name.startswith(PREFIX):
            raise ValueError(f"{path} is not a cgroup the suite makes")
        if not path.exists():
            return f"the cgroup {path} was gone already"
        remove_cgroup(path)
        return f"removed the cgroup {path}, its processes moved to {path.parent}"
    raise ValueError(f"unknown host residue {kind!r}")
