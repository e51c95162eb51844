"""Faults: objects with ``inject()`` and an idempotent ``heal()``, kept on a ledger.

The ledger records when each fault began and ended (the fault timeline the
checkers read), writes a journal on disk so that a run killed half-way can be
healed by the next one, and heals everything still open at the end of a
scenario, whatever happened in it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from support.core.waiting import Deadline
from support.faults.base import Fault
from support.faults.timeline import FaultWindow

__all__ = ["FaultLedger", "HealErrors"]


class HealErrors(AssertionError):
    """One or more heals failed; the message is one line that lists each.

    An ``AssertionError``: behave then fails the scenario with this line
    instead of printing a traceback (the heal's own error is its cause).
    """


def _heal_problem(fault: Fault, error: BaseException) -> str:
    """One line on a failed heal, whatever the driver printed (libpq's messages span lines)."""
    return " ".join(f"{fault.name} of {fault.target}: {type(error).__name__}: {error}".split())


@dataclass
class _Entry:
    fault: Fault
    injected: float
    wall_injected: float
    healed: float | None = None
    error: str = ""


@dataclass
class FaultLedger:
    """The faults of one scenario, in order, with their windows; journalled to ``journal``."""

    journal: Path | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    entries: list[_Entry] = field(default_factory=list)

    def inject(self, fault: Fault) -> Fault:
        """Inject ``fault`` and record it; an instant fault counts as healed when ``inject`` returns.

        The entry is recorded before ``inject`` runs, so a fault that fails
        half-way is still healed at the end of the scenario.
        """
        entry = _Entry(fault, self.clock(), self.wall_clock())
        self.entries.append(entry)
        self._write_journal()
        try:
            fault.inject()
        except BaseException as error:
            entry.error = f"{type(error).__name__}: {error}"
            raise
        if fault.instant:
            entry.healed = self.clock()
        self._write_journal()  # again: the fault now knows what it changed (its residue)
        return fault

    def heal(self, fault: Fault) -> None:
        """Heal ``fault`` (idempotent) and record when, if it was not healed already.

        A heal that fails raises :class:`HealErrors` (one line); the fault stays
        open, so :meth:`heal_all` tries again at the end of the scenario.
        """
        try:
            fault.heal()
        except Exception as error:
            raise HealErrors(f"could not heal: {_heal_problem(fault, error)}") from error
        for entry in self.entries:
            if entry.fault is fault and entry.healed is None:
                entry.healed = self.clock()
        self._write_journal()

    def entry_of(self, fault: Fault) -> _Entry:
        """The entry of ``fault``: when it was injected and healed (monotonic s; healed None while it holds)."""
        return next(e for e in self.entries if e.fault is fault)

    def hold(self, fault: Fault, seconds: float) -> None:
        """Inject ``fault``, keep it for ``seconds`` on the clock, then heal it whatever happens."""
        deadline = Deadline(seconds, self.clock)
        try:
            self.inject(fault)
            # holding a fault for its stated duration is the fault itself, not synchronisation
            while not deadline.expired:
                self.sleep(min(0.05, deadline.remaining()))
        except BaseException:
            with suppress(HealErrors):  # the first error is the one to show; heal_all tries this heal again
                self.heal(fault)
            raise
        self.heal(fault)

    def heal_all(self) -> None:
        """Heal every fault of the ledger; every heal runs even if one fails.

        Faults held open (a stopped database, a cut link) are healed first, newest
        first; then the instant ones (whose heal is "make sure it runs again"),
        since a service killed while its database was down can only come back
        once the database is.
        """
        problems = []
        ordered = sorted(reversed(self.entries), key=lambda e: e.fault.instant)
        for entry in ordered:
            try:
                entry.fault.heal()
                if entry.healed is None:
                    entry.healed = self.clock()
            except Exception as error:  # noqa: BLE001 - the other heals must still run
                problems.append(_heal_problem(entry.fault, error))
        self._write_journal(done=True)
        if problems:
            raise HealErrors("could not heal: " + "; ".join(problems))

    def open_faults(self) -> list[Fault]:
        """Faults injected and not yet healed, oldest first."""
        return [e.fault for e in self.entries if e.healed is None]

    def windows(self) -> list[FaultWindow]:
        """The fault timeline, in injection order."""
        return [
            FaultWindow(e.fault.name, e.fault.target, e.injected, e.healed, e.fault.instant, e.wall_injected)
            for e in self.entries
        ]

    def as_records(self) -> list[dict]:
        """The ledger as plain dicts (wall-clock times, seconds) for the evidence."""
        records = []
        for e in self.entries:
            healed_wall = None if e.healed is None else e.wall_injected + (e.healed - e.injected)
            records.append(
                {
                    "fault": e.fault.name,
                    "target": e.fault.target,
                    "instant": e.fault.instant,
                    "injected_at": round(e.wall_injected, 3),
                    "healed_at": None if healed_wall is None else round(healed_wall, 3),
                    "duration_s": None if e.healed is None else round(e.healed - e.injected, 3),
                    "error": e.error,
                    **({"heal": e.fault.heal_note} if e.fault.heal_note else {}),
                }
            )
        return records

    def _write_journal(self, done: bool = False) -> None:
        if self.journal is None:
            return
        open_faults = []
        if not done:
            for entry, record in zip(self.entries, self.as_records(), strict=True):
                if record["healed_at"] is None:
                    # what outlives the run if it is killed now: see support.faults.residues.heal_residue
                    open_faults.append({**record, "residue": entry.fault.residue()})
        tmp = self.journal.with_suffix(".tmp")
        tmp.write_text(json.dumps({"open_faults": open_faults}))
        tmp.replace(self.journal)
