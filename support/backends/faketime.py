"""A service's own clock, through the libfaketime preload: the library, the offset file, the environment.

Every command service starts with libfaketime preloaded (when the machine has
it) and an offset file that says ``+0``: real time. A clock fault rewrites the
file and the service's wall clock moves at its next ``time()`` call
(``FAKETIME_NO_CACHE``), with no restart; the heal writes ``+0`` again, also
live. ``CLOCK_MONOTONIC`` stays real (``FAKETIME_DONT_FAKE_MONOTONIC``), as it
does when NTP steps a real clock: a jump moves what a program reads as the date,
never its timers.

The preload's cost, measured on this 2-core machine (``/tmp`` bench in the
README's "Clock faults"): ``time.time()`` goes from ~0.25 to ~3.8 us (the file is
read on every call), ``time.monotonic()`` is unchanged; a no-database FastAPI
endpoint under uvicorn costs 247-260 us of CPU per request with it against
217-263 us without (within the noise of the machine). That is why services
start with the preload always: the alternative, restarting a service at its
first clock fault, would itself be a fault (it drops in-memory state such as
sessions, the very thing a clock fault should be judged on).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "FakeClock",
    "ClockUnavailable",
    "find_library",
    "make_clock",
    "preload_container",
    "IN_CONTAINER_DIR",
    "MISSING",
]

#: where Debian's ``libfaketime`` package puts the library (the MT variant is for threaded programs)
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/*/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)
#: the offset file's folder inside a container (mounted read-only from the run's directory)
IN_CONTAINER_DIR = "/run/chaos-clock"
MISSING = (
    "libfaketime is not installed (no libfaketimeMT.so.1 under /usr/lib/*/faketime): "
    "apt-get install libfaketime (bash setup.sh does it as root), then run again"
)


class ClockUnavailable(AssertionError):
    """A clock fault the machine or the service cannot take; the message is one line saying why and what to do.

    An ``AssertionError``, so behave fails the scenario with this line and no traceback.
    """


def find_library() -> Path | None:
    """The libfaketime preload library (its multi-threaded build), or None when the machine has none."""
    override = os.environ.get("SUITE_LIBFAKETIME")  # tests point it at a missing file to see the refusal
    if override is not None:
        return Path(override) if Path(override).is_file() else None
    for pattern in _CANDIDATES:
        for found in sorted(glob.glob(pattern)):
            return Path(found)
    return None


@dataclass(frozen=True)
class FakeClock:
    """One service's clock offset: ``file`` on the host, seen by the service at ``seen_as``."""

    service: str
    file: Path
    library: Path
    seen_as: str

    def environment(self, library_as: str | None = None, inherited: str = "") -> dict[str, str]:
        """The variables that preload the library (seen at ``library_as``, default its host path) into a process."""
        library = library_as or str(self.library)
        return {
            "LD_PRELOAD": f"{library} {inherited}".strip(),
            "FAKETIME_TIMESTAMP_FILE": self.seen_as,
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            # libfaketime's default "monotonic fix" rewrites every pthread_cond_timedwait: measured here, 20
            # asyncio run_in_executor round trips took 0.5-3.4 s with it and 0.02 s without (0.02-0.04 s bare)
            "FAKETIME_FORCE_MONOTONIC_FIX": "0",
        }

    def set_offset(self, seconds: float) -> None:
        """Move the service's wall clock to real time + ``seconds`` (negative: behind), live."""
        # written whole and renamed: the service reads the file on every time() call and must
        # never see it half-written (an empty file would mean "no fake time" to libfaketime)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+.3f}\n")
        tmp.chmod(0o644)
        tmp.replace(self.file)

    def offset(self) -> float:
        """The offset the service sees now, in seconds (0: real time)."""
        return float(self.file.read_text().strip() or 0)


def make_clock(run_dir: Path, service: str, in_container: bool = False) -> FakeClock | None:
    """A real-time offset file for ``service`` under ``run_dir``; None when the machine has no libfaketime."""
    library = find_library()
    if library is None:
        return None
    folder = run_dir / "clock" / service
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # a service run as another user (a container's) must read it
    seen_as = f"{IN_CONTAINER_DIR}/offset" if in_container else str(folder / "offset")
    clock = FakeClock(service, folder / "offset", library, seen_as)
    clock.set_offset(0)
    return clock


def preload_container(service: Any, run_dir: Path) -> None:
    """Give a not yet created container ``service`` (its ``spec``) the preload and ``service.clock``.

    The host's library is mounted read-only at its own path (the suite's images are
    Debian bookworm, as this machine's), the clock's folder read-only at
    :data:`IN_CONTAINER_DIR`; without libfaketime ``service.clock`` is None.
    """
    clock = make_clock(run_dir, service.name, in_container=True)
    service.clock = clock
    if clock is None:
        return
    spec = service.spec
    volumes = {
        **spec.volumes,
        str(clock.library): {"bind": str(clock.library), "mode": "ro"},
        str(clock.file.parent): {"bind": IN_CONTAINER_DIR, "mode": "ro"},
    }
    environment = {**spec.environment, **clock.environment(inherited=spec.environment.get("LD_PRELOAD", ""))}
    service.spec = replace(spec, volumes=volumes, environment=environment)
