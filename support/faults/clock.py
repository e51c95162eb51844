"""Clock faults: a service's wall clock jumps ahead, or is skewed for a while, through libfaketime.

The service runs with libfaketime preloaded from its start
(:mod:`support.backends.faketime`), so a fault only rewrites its offset file:
the clock moves at the service's next ``time()`` call and the heal puts it back
to real time the same way, with no restart (the heal note says so). Timers
(``CLOCK_MONOTONIC``) are never moved, as with a real NTP step.

A run killed while a clock is off leaves nothing behind: the offset file lives
in the run's directory and the faked process is the run's own, both removed by
the reaper or by the next run's sweep (:mod:`support.backends.reaper`), so the
journal's entry carries no residue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from support.backends.faketime import MISSING, ClockUnavailable, FakeClock, find_library
from support.faults.process import ServiceFault

__all__ = ["ClockOffset", "clock_of"]


def clock_of(service: object, name: str) -> FakeClock:
    """The clock of ``service``; :class:`ClockUnavailable` in one line when it has none, saying why."""
    clock = getattr(service, "clock", None)
    if isinstance(clock, FakeClock):
        return clock
    if find_library() is None:
        raise ClockUnavailable(f"the clock of {name} cannot be moved: {MISSING}")
    if hasattr(service, "clock"):
        raise ClockUnavailable(
            f"the clock of {name} cannot be moved: the stack was started without libfaketime preloaded; "
            "run with -D clock_faults=true"
        )
    raise ClockUnavailable(
        f"the clock of {name} cannot be moved: clock faults reach the stack's command services, started by the "
        f"suite with libfaketime preloaded ({name} is a {type(service).__name__}, without it)"
    )


@dataclass
class ClockOffset(ServiceFault):
    """The service's wall clock moved by ``seconds`` (negative: behind) until healed; ``jump``: named a jump.

    ``inject`` makes the move at once (the offset file is read on every ``time()``
    call); ``heal`` restores real time live and says so in ``heal_note``.
    """

    seconds: float
    jump: bool = False
    instant: bool = False

    @property
    def name(self) -> str:
        kind = "clock jump" if self.jump else "clock skew"
        return f"{kind} ({self.seconds:+g} s)"

    def inject(self) -> None:
        clock = clock_of(self.service, self.service.name)
        clock.set_offset(self.seconds)
        self.active_since = time.monotonic()

    def heal(self) -> None:
        clock = getattr(self.service, "clock", None)
        if not isinstance(clock, FakeClock):
            return  # inject refused: nothing was moved
        self.mark_effect_over()
        if clock.offset() != 0:
            clock.set_offset(0)
        self.heal_note = "real time restored live through the preload's offset file; the service was not restarted"
