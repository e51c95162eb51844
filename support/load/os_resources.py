"""What the load worker's process asks of the OS: a scheduling class, enough file descriptors, CPU time.

Kept apart from :mod:`support.load.worker` (what the worker does) because it is
about the process it runs in; the controller reads a worker's CPU time from here too.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from support.load.spec import LoadSpec

__all__ = ["keep_schedule_first", "allow_open_files", "own_cpu_seconds", "cpu_seconds_of", "REALTIME_MAX_RATE"]

REALTIME_MAX_RATE = 1000.0  # requests/s: about a fifth of a core for this worker on a 2-core VM


def keep_schedule_first(spec: LoadSpec) -> str:
    """Run an open-model worker under ``SCHED_FIFO`` where allowed; the scheduling class it got.

    On two busy cores the service and its database keep both CPUs: a worker at
    normal priority wakes for its next launch only when the kernel gets round to
    it, milliseconds late, and that lag is charged to the schedule. A real-time
    worker preempts them at once. It is safe because an open-model worker's CPU
    is bounded by its rate: well under a tenth of a core at the suite's levels.
    Above ``REALTIME_MAX_RATE`` requests/s that share is no longer small, and a
    closed-model worker may spin as fast as answers come: both keep the normal
    class, as does a worker without the privilege (not root, or a container
    without CAP_SYS_NICE).
    """
    if spec.model != "open" or spec.rate > REALTIME_MAX_RATE or not hasattr(os, "sched_setscheduler"):
        return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return "normal"
    return "realtime"


def allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit on open files to ``wanted`` (at most to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def own_cpu_seconds() -> float:
    """User + system CPU seconds this process has used (microsecond resolution)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from /proc (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after its closing parenthesis are fixed
    after = stat[stat.rindex(")") + 2 :].split()
    return (int(after[11]) + int(after[12])) / os.sysconf("SC_CLK_TCK")
