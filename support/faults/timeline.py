"""The fault timeline: when each fault of a scenario was injected and healed."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FaultWindow"]


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One fault as it happened, in monotonic seconds.

    ``injected`` is when the fault began; ``healed`` is when it ended (for an
    instant fault such as a restart or a kill, when the action returned, i.e.
    the target was back or the kill was issued) or ``None`` if it never healed.
    ``instant`` marks faults whose effect is the action itself (restart, kill):
    recovery is then measured from ``injected``; for a fault held for a while
    (down, paused, locked for N seconds) it is measured from ``healed``.
    ``wall_injected`` is the same moment as ``injected`` on the wall clock
    (epoch seconds), for reports and for reading service logs around the fault.
    """

    name: str
    target: str
    injected: float
    healed: float | None
    instant: bool = False
    wall_injected: float = 0.0

    @property
    def recovery_reference(self) -> float | None:
        """The moment recovery is measured from, monotonic seconds."""
        return self.injected if self.instant else self.healed
