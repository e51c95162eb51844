"""Healing the faults that killed runs left in databases that outlive them (an attached database).

A dead run's journal (``faults.json``) is kept under ``<work_root>/residues/``
by :func:`support.core.run_dirs.clean_leftovers`; the next run against the same
database heals each residue before its first scenario.
"""

from __future__ import annotations

from pathlib import Path

from support.faults.admin import admin_connection, database_identity
from support.faults.concurrency import drop_cancel_objects, drop_cross_objects
from support.faults.database import DELAY_POLICY, ReadOnlyDatabase, SlowStatements
from support.faults.kept_residues import heal_kept_residues
from support.faults.serialization import drop_serial_objects, restore_isolation, server_isolation
from support.faults.slots import SlotExhaustion

__all__ = ["heal_residues", "heal_residue"]


def heal_residues(work_root: Path, admin_dsn: str) -> list[str]:
    """Heal every kept residue in the database of ``admin_dsn``; one line for each heal.

    Residues of other databases are kept for a run that reaches them. Raises
    :class:`support.stack.services.ServiceError` (one line) if a heal fails: a run
    must not start on a database a killed run left broken.
    """
    here = database_identity(admin_dsn)
    return heal_kept_residues(
        work_root,
        lambda residue: residue.get("database") == here,
        lambda residue: heal_residue(admin_dsn, residue),
        f"in {here}",
        said=f" in {here}",
    )


def heal_residue(dsn: str, residue: dict) -> str:
    """Undo what a fault's ``residue()`` says a killed run left in the database at ``dsn``; what was done.

    A run killed by SIGKILL cannot heal; its journal keeps the residues of its
    open faults, and the next run against the same database heals them. The
    process and Docker backends' databases die with their run; an attached
    database does not. Each heal is the fault's own, idempotent. Where the
    journal was written before the fault recorded its prior state (a kill in
    the middle of ``inject``): the read-only default is reset; the slowing
    policy and function are dropped and row security is switched off only if
    no other policy is left on the table; the deadlock trigger, its function
    and side table are dropped (so are the cancel fault's); the serialization fault's isolation default is
    reset only when it is ``serializable`` (the fault's value), and its trigger,
    function and side table are dropped; a service role left at ``CONNECTION
    LIMIT 0`` gets the default (-1) back.
    """
    kind = residue.get("kind")
    if kind == "read_only":
        read_only = ReadOnlyDatabase(dsn)
        read_only._changed = True
        read_only.heal()
        return "reset the server-wide read-only default"
    if kind == "slow_statements":
        table = str(residue["table"])
        slow = SlowStatements(dsn, 0.0, table)
        was = residue.get("was")
        if was is None:
            with admin_connection(dsn) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_policy WHERE polrelid = %s::regclass AND polname <> %s",
                    (table, DELAY_POLICY),
                )
                others = cur.fetchone()[0]
                cur.execute(
                    "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass", (table,)
                )
                now = cur.fetchone()
            was = [False, False] if others == 0 else [bool(now[0]), bool(now[1])]
        slow._was, slow._changed = (bool(was[0]), bool(was[1])), True
        slow.heal()
        return f"removed the statement-slowing policy from table {table}"
    if kind == "deadlocks":
        table = str(residue["table"])
        drop_cross_objects(dsn, table)
        return f"dropped the deadlock trigger from table {table}"
    if kind == "cancel":
        table = str(residue["table"])
        drop_cancel_objects(dsn, table)
        return f"dropped the cancel trigger from table {table}"
    if kind == "serialization":
        table = str(residue["table"])
        if "was" in residue:
            prior = None if residue["was"] is None else str(residue["was"])
        else:  # killed before the fault read it: only its own value is undone
            with admin_connection(dsn) as conn, conn.cursor() as cur:
                isolation = server_isolation(cur)
            prior = None if isolation == "serializable" else isolation
        restore_isolation(dsn, prior)
        drop_serial_objects(dsn, table)
        return f"reset the server-wide isolation default and dropped the serialization trigger from table {table}"
    if kind == "slot_exhaustion":
        service_role = str(residue.get("service_role") or "")
        limit = residue.get("service_limit")
        slots = SlotExhaustion(dsn, role=str(residue["role"]), service_role=service_role)
        if service_role and limit is None:
            with admin_connection(dsn) as conn, conn.cursor() as cur:
                cur.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (service_role,))
                row = cur.fetchone()
            limit = -1 if row is not None and row[0] == 0 else None  # 0 is the fault's, never a service's own
        slots._service_limit, slots._role_made = limit, True
        slots.heal()
        return f"dropped role {slots.role}" + (
            f" and gave {service_role} back its connection limit" if limit is not None else ""
        )
    raise ValueError(f"unknown fault residue {kind!r}")
