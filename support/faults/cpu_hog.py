"""A CPU hog beside a service: ``stress-ng`` busy on every CPU, competing with the service for them.

The hog runs on the machine the service runs on (on Docker too: a container
shares the host's CPUs), with two workers per CPU at the normal priority, in a
session of its own and marked with the run (``CHAOS_SUITE_RUN``), so that the
reaper kills it if the suite dies. It also ends by itself after ``max_seconds``.

What it takes from the service depends on the service's CPU weight, not on the
hog's worker count: where the kernel schedules each session as one group
(``CONFIG_SCHED_AUTOGROUP``, on here) and on Docker (each container its own
cgroup), the hog's workers share one group's weight, so a service at the normal
weight keeps its fair part of the CPUs beside them (the reference API's slowest
request beside the hog: 36-178 ms here; ``cpu_heavy``, which spends 30 ms of CPU
on each write, 0.53 s); a service at the lowest weight (its group at nice 19) gets
almost nothing (``tests/broken_apis/low_priority``: beside a 5 s hog its requests
waited 4.5-5 s, some until the load's 5 s timeout).

On Docker (cgroup v1) a container's weight ranks it only among containers: its
cgroup sits under ``/docker``, which meets the hog's autogroup at the root as one
group. A container at ``--cpu-shares 2`` beside this hog kept its part of the
CPUs (a 5 ms task every 20 ms for 5 s, 4 stress-ng workers: worst 12-24 ms, as at
1024); with the hog's workers in a cgroup of their own under ``/docker`` at 1024
shares, the same container's worst was 826 ms (16 ms at 1024). So the Docker
form of ``low_priority`` fails only once the hog runs beside containers, not yet.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.core.process_tree import descendants
from support.core.run_dirs import child_env
from support.core.waiting import WaitTimeout, wait_until
from support.faults.cgroups import FaultUnavailable
from support.faults.process import ServiceFault

__all__ = ["CpuHog"]


@dataclass
class CpuHog(ServiceFault):
    """``stress-ng --cpu workers`` beside ``service`` (default: two per CPU), run in ``work_dir``, at most ``max_seconds``."""

    work_dir: Path = Path("/tmp")
    workers: int = 0
    max_seconds: float = 300.0
    name: str = "CPU hog"
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _started: float = field(default=0.0, repr=False)

    def inject(self) -> None:
        binary = shutil.which("stress-ng")
        if binary is None:
            raise FaultUnavailable(
                "stress-ng is not installed: apt-get install stress-ng (it is in requirements-debian.txt;"
                " bash setup.sh installs it as root)"
            )
        workers = self.workers or 2 * (os.cpu_count() or 1)
        log = open(self.work_dir / "cpu-hog.log", "ab")
        with log:
            self._proc = subprocess.Popen(
                [binary, "--cpu", str(workers), "--timeout", f"{max(1, round(self.max_seconds))}s", "--quiet"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=child_env(self.work_dir),
                cwd=self.work_dir,
                start_new_session=True,
            )
        proc = self._proc
        try:
            # busy once every worker runs (stress-ng forks them after it starts)
            wait_until(
                lambda: len(descendants(proc.pid)) >= workers or proc.poll() is not None, 5.0, "stress-ng's workers"
            )
        except WaitTimeout:
            raise RuntimeError(f"stress-ng started fewer than {workers} CPU workers in 5 s") from None
        if proc.poll() is not None:
            raise RuntimeError(f"stress-ng exited with {proc.returncode} at once; see {self.work_dir / 'cpu-hog.log'}")
        self._started = time.monotonic()
        self.active_since = self._started
        self.workers = workers

    def heal(self) -> None:
        self.mark_effect_over()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            tree = [proc.pid, *descendants(proc.pid)]
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        proc.wait(10)
        if self._started:
            self.heal_note = f"stress-ng ran {self.workers} CPU workers for {time.monotonic() - self._started:.1f} s"
