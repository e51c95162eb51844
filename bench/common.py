"""What the benchmarks share: the settings they run with, CPU time from /proc, percentiles, the table."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from support.core.config import Settings, load_settings, read_ini_userdata
from support.load.history import percentile  # the suite's one percentile (nearest rank), re-exported

__all__ = ["ROOT", "WORK_ROOT", "bench_settings", "cpu_seconds", "percentile", "ms", "table", "machine", "pause_until"]

ROOT = Path(__file__).resolve().parents[1]
#: every benchmark's run directories go here, apart from the suite's own runs
WORK_ROOT = "/tmp/chaos-suite-bench"


def bench_settings(**changes: object) -> Settings:
    """The suite's settings from ``behave.ini`` (no ``-D``, no ``CHAOS_*`` variables), under :data:`WORK_ROOT`."""
    ini = read_ini_userdata(ROOT / "behave.ini")
    return replace(load_settings(ini, ini, environ={}), work_root=WORK_ROOT, **changes)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` (all its threads, dead ones included) has used, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    after = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return (int(after[11]) + int(after[12])) / os.sysconf("SC_CLK_TCK")


def ms(seconds: float | None, digits: int = 1) -> str:
    """Seconds as milliseconds for the table; ``-`` for None."""
    return "-" if seconds is None else f"{seconds * 1000:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> str:
    """One line: CPU count, CPU model and load average right now."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{os.cpu_count()} CPUs ({model}), load average {load}"


def pause_until(moment: float) -> None:
    """Sleep until monotonic ``moment``: the edge of a measurement window, which is a time, not an event."""
    remaining = moment - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
