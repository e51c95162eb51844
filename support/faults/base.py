"""The fault contract: what every fault offers and what the ledger, the journal and the checkers read."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

__all__ = ["Fault", "FaultHadNoEffect"]


class FaultHadNoEffect(RuntimeError):
    """A fault could not find what to break; a scenario built on it would test nothing."""


class Fault(ABC):
    """Something that breaks the stack on :meth:`inject` and is undone by :meth:`heal`.

    ``heal()`` must be idempotent and safe to call when ``inject()`` failed
    half-way. What the rest of the suite reads, with the defaults a fault that
    says nothing more gets:

    * ``name``, ``target``: what broke and where, for messages and the evidence
      (every fault says; a dataclass field or a property);
    * ``instant``: the fault does its harm in the act (a restart, a kill):
      recovery is measured from its injection, not from its heal;
    * ``active_since``, ``active_until``: monotonic s, the window in which the
      fault's effect is certain (``inject()`` had made it take effect; ``heal()``
      began); ``None`` when the fault cannot tell, and the ledger's window, which
      is wider, is used (:mod:`support.checks.during_faults`);
    * ``heal_note``: one line on what the heal had to do beyond undoing the
      fault (sessions it terminated), for the evidence; empty when nothing;
    * :meth:`residue`: what outlives the run in a database if it is killed while
      the fault holds (:mod:`support.faults.residues` heals it next run).
    """

    instant: bool = False
    active_since: float | None = None
    active_until: float | None = None
    heal_note: str = ""

    @property
    @abstractmethod
    def name(self) -> str:
        """What broke ("restart", "table lock"), for messages and the evidence."""

    @property
    @abstractmethod
    def target(self) -> str:
        """Where it broke (a service's name, "postgres (users table)", "postgres link")."""

    @abstractmethod
    def inject(self) -> None:
        """Break the stack; may fail half-way (``heal()`` then undoes what was done)."""

    @abstractmethod
    def heal(self) -> None:
        """Undo the fault (idempotent)."""

    def mark_effect_over(self) -> None:
        """Close the window of certain effect now (monotonic s), once: a heal calls it before it undoes anything."""
        if self.active_since is not None and self.active_until is None:
            self.active_until = time.monotonic()

    def residue(self) -> dict | None:
        """What a run killed now would leave behind, as JSON-able data (``None``: nothing outlives the run)."""
        return None
