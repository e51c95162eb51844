"""A service's own clock, through the libfaketime preload: the library, the offset file, the environment.

With ``clock_faults`` on (off by default, see :data:`OPT_IN`), every command
service starts with libfaketime preloaded (when the machine has it) and an
offset file that says ``+0``: real time. A clock fault rewrites the file and the
service's wall clock moves at its next ``time()`` call (``FAKETIME_NO_CACHE``),
with no restart; the heal writes ``+0`` again, also live. ``CLOCK_MONOTONIC``
stays real (``FAKETIME_DONT_FAKE_MONOTONIC``), as it does when NTP steps a real
clock: a jump moves what a program reads as the date, never its timers.

Why it is opt-in (measured with Debian 12's libfaketime 0.9.10 and Python 3.11,
``tests/test_clock_faults.py`` checks it): Python 3.11's ``time.sleep`` sleeps
with ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, deadline)``, and 0.9.10
rewrites that deadline as if the monotonic clock were faked even when it is not
(``start_monotonic + deadline - faked_wall_at_start``: a negative time, so
EINVAL; libfaketime's upstream issue 426, fixed in 0.9.11). Faking the
monotonic clock too makes ``time.sleep`` work but hangs every timed
``threading`` wait (``Lock.acquire(timeout=)``, ``Event.wait``, ``Timer``):
glibc's ``sem_clockwait`` is not wrapped by 0.9.10 and gets a deadline on the
faked, epoch-like clock. ``FAKETIME_FORCE_MONOTONIC_FIX`` and giving the time
through ``FAKETIME`` instead of ``FAKETIME_TIMESTAMP_FILE`` change neither. So
no setting of 0.9.10 lets a Python 3.11 service both sleep and wait on threads
while its wall clock is faked; the suite keeps its timers real and preloads only
on request, for services that do not call ``time.sleep`` (the reference API).

The preload's cost, measured on this 2-core machine (``/tmp`` bench in the
README's "Clock faults"): ``time.time()`` goes from ~0.25 to ~3.8 us (the file is
read on every call), ``time.monotonic()`` is unchanged; a no-database FastAPI
endpoint under uvicorn costs 247-260 us of CPU per request with it against
217-263 us without (within the noise of the machine). That is why a preloaded
service starts with the preload: the alternative, restarting a service at its
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
    "OPT_IN",
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
#: why the preload is off by default, in one line (the module's docstring says how this was found)
OPT_IN = (
    "libfaketime is preloaded only with -D clock_faults=true: its Debian 12 version (0.9.10) makes a Python 3.11 "
    "time.sleep fail with EINVAL (it shifts the absolute monotonic deadline as if CLOCK_MONOTONIC were faked), and "
    "faking CLOCK_MONOTONIC too hangs every timed threading wait instead"
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


def make_clock(run_dir: Path, service: str, in_container: bool = False, enabled: bool = True) -> FakeClock | None:
    """A real-time offset file for ``service`` under ``run_dir``, or None: clock faults off or no libfaketime.

    ``enabled`` is the ``clock_faults`` setting; this is the one place that reads
    it for both backends (see :data:`OPT_IN` for why it is off by default).
    """
    if not enabled:
        return None
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


def preload_container(service: Any, run_dir: Path, enabled: bool) -> None:
    """Give a not yet created container ``service`` (its ``spec``) the preload and ``service.clock``.

    The host's library is mounted read-only at its own path (the suite's images are
    Debian bookworm, as this machine's), the clock's folder read-only at
    :data:`IN_CONTAINER_DIR`; with clock faults off (``enabled``: the
    ``clock_faults`` setting) or without libfaketime ``service.clock`` is None.
    """
    clock = make_clock(run_dir, service.name, in_container=True, enabled=enabled)
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
