"""The one walk over the residues that killed runs' journals left under ``<work_root>/residues/``.

:func:`support.core.run_dirs.clean_leftovers` keeps each dead run's open
residues in ``<work_root>/residues/<run>.json``; the database heals
(:mod:`support.faults.residues`) and the host heals
(:mod:`support.faults.host_residues`) each take their own from those files
here, and leave the others for the heal they belong to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.core.run_dirs import RESIDUES
from support.stack.services import ServiceError

__all__ = ["heal_kept_residues"]


def heal_kept_residues(
    work_root: Path, mine: Callable[[Any], bool], heal: Callable[[dict], str], place: str, said: str = ""
) -> list[str]:
    """Heal with ``heal`` every kept residue that ``mine`` selects; one line for each heal (``said`` added to
    what ``heal`` returns).

    A file is rewritten with the residues left to other heals, or removed when
    none is left; a file that cannot be read or parsed is passed over. Raises
    :class:`support.stack.services.ServiceError` (one line, naming ``place``:
    where the residue was left) if a heal fails, before the file is rewritten:
    every heal is idempotent, so the next start tries them all again.
    """
    done = []
    for path in sorted((work_root / RESIDUES).glob("*.json")):
        try:
            residues = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        left = []
        for residue in residues:
            if not mine(residue):
                left.append(residue)
                continue
            try:
                done.append(f"{heal(residue)}{said} (left by the killed {path.stem})")
            except Exception as error:  # noqa: BLE001 - any failure stops the start with one line
                raise ServiceError(
                    f"could not heal the {residue.get('kind')} fault that the killed {path.stem} left {place}:"
                    f" {type(error).__name__}: {' '.join(str(error).split())}; heal it by hand, then delete {path}"
                ) from None
        if left:
            path.write_text(json.dumps(left))
        else:
            path.unlink()
    return done
