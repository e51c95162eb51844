"""Faults: objects with ``inject()`` and an idempotent ``heal()``, kept on a ledger.

The ledger records when each fault began and ended (the fault timeline the
checkers read), writes a journal on disk so that a run killed half-way can be
healed by the next one, and heals everything still open at the end of a
scenario, whatever happened in it.
"""
from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from support.stack.services import Service
from support.faults.timeline import FaultWindow
from support.core.waiting import Deadline

__all__ = ["Fault", "FaultLedger", "ServiceRestart", "ServiceKill", "ServiceStop", "ServicePause",
           "StackRestart", "HealErrors"]


class Fault(Protocol):
    """Something that breaks the stack on ``inject()`` and is undone by ``heal()``.

    ``heal()`` must be idempotent and safe to call when ``inject()`` failed
    half-way. ``instant`` faults (a restart, a kill) do their harm in the act;
    recovery is measured from their injection.
    """

    name: str
    target: str
    instant: bool

    def inject(self) -> None: ...

    def heal(self) -> None: ...


@dataclass
class ServiceRestart:
    """Restart a service (PostgreSQL: ``fast`` or ``immediate`` shutdown); returns once it is ready."""

    service: Service
    mode: str = "fast"
    timeout: float = 30.0
    instant: bool = True

    @property
    def name(self) -> str:
        return "restart" if self.mode == "fast" else f"restart ({self.mode})"

    @property
    def target(self) -> str:
        return self.service.name

    def inject(self) -> None:
        self.service.restart(self.mode, self.timeout)

    def heal(self) -> None:
        self.service.start(self.timeout)


@dataclass
class ServiceKill:
    """Kill a service with a signal (SIGKILL by default); its restart policy brings it back."""

    service: Service
    sig: int = signal.SIGKILL
    timeout: float = 30.0
    instant: bool = True

    @property
    def name(self) -> str:
        return f"kill ({signal.Signals(self.sig).name})"

    @property
    def target(self) -> str:
        return self.service.name

    def inject(self) -> None:
        self.service.kill(self.sig)

    def heal(self) -> None:
        self.service.start(self.timeout)


@dataclass
class ServiceStop:
    """Stop a service gracefully; healed by starting it again."""

    service: Service
    timeout: float = 30.0
    instant: bool = False
    name: str = "stop"

    @property
    def target(self) -> str:
        return self.service.name

    def inject(self) -> None:
        self.service.stop(self.timeout)

    def heal(self) -> None:
        self.service.start(self.timeout)


@dataclass
class ServicePause:
    """Freeze a service (SIGSTOP / docker pause): it accepts connections but answers nothing."""

    service: Service
    instant: bool = False
    name: str = "pause"

    @property
    def target(self) -> str:
        return self.service.name

    def inject(self) -> None:
        self.service.pause()

    def heal(self) -> None:
        self.service.resume()


@dataclass
class StackRestart:
    """Stop every service and start them all again."""

    restart_all: Callable[[float], None]
    ensure_running: Callable[[float], None]
    timeout: float = 30.0
    instant: bool = True
    name: str = "restart"
    target: str = "whole stack"

    def inject(self) -> None:
        self.restart_all(self.timeout)

    def heal(self) -> None:
        self.ensure_running(self.timeout)


class HealErrors(RuntimeError):
    """One or more heals failed; the message lists each."""


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
        """Heal ``fault`` (idempotent) and record when, if it was not healed already."""
        fault.heal()
        for entry in self.entries:
            if entry.fault is fault and entry.healed is None:
                entry.healed = self.clock()
        self._write_journal()

    def hold(self, fault: Fault, seconds: float) -> None:
        """Inject ``fault``, keep it for ``seconds`` on the clock, then heal it whatever happens."""
        deadline = Deadline(seconds, self.clock)
        try:
            self.inject(fault)
            # holding a fault for its stated duration is the fault itself, not synchronisation
            while not deadline.expired:
                self.sleep(min(0.05, deadline.remaining()))
        finally:
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
                problems.append(f"{entry.fault.name} of {entry.fault.target}: {type(error).__name__}: {error}")
        self._write_journal(done=True)
        if problems:
            raise HealErrors("could not heal: " + "; ".join(problems))

    def open_faults(self) -> list[Fault]:
        """Faults injected and not yet healed, oldest first."""
        return [e.fault for e in self.entries if e.healed is None]

    def windows(self) -> list[FaultWindow]:
        """The fault timeline, in injection order."""
        return [FaultWindow(e.fault.name, e.fault.target, e.injected, e.healed, e.fault.instant, e.wall_injected)
                for e in self.entries]

    def as_records(self) -> list[dict]:
        """The ledger as plain dicts (wall-clock times, seconds) for the evidence."""
        records = []
        for e in self.entries:
            healed_wall = None if e.healed is None else e.wall_injected + (e.healed - e.injected)
            records.append({"fault": e.fault.name, "target": e.fault.target, "instant": e.fault.instant,
                            "injected_at": round(e.wall_injected, 3),
                            "healed_at": None if healed_wall is None else round(healed_wall, 3),
                            "duration_s": None if e.healed is None else round(e.healed - e.injected, 3),
                            "error": e.error})
        return records

    def _write_journal(self, done: bool = False) -> None:
        if self.journal is None:
            return
        open_faults = []
        if not done:
            for entry, record in zip(self.entries, self.as_records()):
                if record["healed_at"] is None:
                    # what outlives the run if it is killed now: see support.faults.database.heal_residue
                    residue = getattr(entry.fault, "residue", None)
                    open_faults.append({**record, "residue": residue() if residue else None})
        tmp = self.journal.with_suffix(".tmp")
        tmp.write_text(json.dumps({"open_faults": open_faults}))
        tmp.replace(self.journal)
