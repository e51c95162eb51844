"""Healing the faults that killed runs left in databases that outlive them (an attached database).

A dead run's journal (``faults.json``) is kept under ``<work_root>/residues/``
by :func:`support.core.run_dirs.clean_leftovers`; the next run against the same
database heals each residue before its first scenario.
"""
from __future__ import annotations

import json
from pathlib import Path

from support.core.run_dirs import RESIDUES
from support.faults.database import database_identity, heal_residue
from support.stack.services import ServiceError

__all__ = ["heal_residues"]


def heal_residues(work_root: Path, admin_dsn: str) -> list[str]:
    """Heal every kept residue in the database of ``admin_dsn``; one line for each heal.

    Residues of other databases are kept for a run that reaches them. Raises
    :class:`support.stack.services.ServiceError` (one line) if a heal fails: a run
    must not start on a database a killed run left broken.
    """
    here = database_identity(admin_dsn)
    done = []
    for path in sorted((work_root / RESIDUES).glob("*.json")):
        try:
            residues = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        left = []
        for residue in residues:
            if residue.get("database") != here:
                left.append(residue)
                continue
            try:
                done.append(f"{heal_residue(admin_dsn, residue)} in {here} (left by the killed {path.stem})")
            except Exception as error:  # noqa: BLE001 - any failure stops the start with one line
                raise ServiceError(f"could not heal the {residue.get('kind')} fault that the killed {path.stem}"
                                   f" left in {here}: {type(error).__name__}: {' '.join(str(error).split())}"
                                   f"; heal it by hand, then delete {path}") from None
        if left:
            path.write_text(json.dumps(left))
        else:
            path.unlink()
    return done
