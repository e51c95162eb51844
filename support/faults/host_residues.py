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

import json
from pathlib import Path

from support.core.run_dirs import RESIDUES
from support.faults.cgroups import CGROUP_ROOT, PREFIX, remove_cgroup
from support.stack.services import ServiceError

__all__ = ["heal_host_residues", "heal_host_residue"]


def heal_host_residues(work_root: Path) -> list[str]:
    """Heal every kept residue of this machine (``"host": true``); one line for each heal.

    Raises :class:`support.stack.services.ServiceError` (one line) if a heal fails.
    """
    done = []
    for path in sorted((work_root / RESIDUES).glob("*.json")):
        try:
            residues = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        left = [r for r in residues if not (isinstance(r, dict) and r.get("host"))]
        for residue in residues:
            if residue in left:
                continue
            try:
                done.append(f"{heal_host_residue(residue)} (left by the killed {path.stem})")
            except Exception as error:  # noqa: BLE001 - any failure stops the start with one line
                raise ServiceError(
                    f"could not heal the {residue.get('kind')} fault that the killed {path.stem} left on this"
                    f" machine: {type(error).__name__}: {' '.join(str(error).split())}; heal it by hand,"
                    f" then delete {path}"
                ) from None
        if left:
            path.write_text(json.dumps(left))
        else:
            path.unlink()
    return done


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
