"""Broken variant of the users API: deployed at the lowest CPU priority, so a CPU hog beside it starves it.

A deploy that copied a batch job's settings (``nice -n 19``, systemd ``Nice=19``
or ``CPUWeight=1``, ``docker run --cpu-shares 2``) runs the service at the lowest
CPU weight the kernel has. On an idle machine nothing changes; beside processes
busy at the normal weight the service gets what they leave, almost nothing. The
reference API runs at the normal weight: beside ``stress-ng`` (two workers per CPU)
its slowest request took 36-178 ms here (9 runs, other test runs on
the machine), this variant's 4.5-5 s.

This module does the same to itself before the app starts: nice 19 for its
process (the threads it starts later inherit it) and, where the kernel groups
processes by session for scheduling (``CONFIG_SCHED_AUTOGROUP``, on here:
``/proc/sys/kernel/sched_autogroup_enabled``), nice 19 for its session's group too,
since a process's nice only ranks it against the processes of its own group and
the hog runs in a session of its own (measured: nice 19 alone changed nothing).
"the API answers within 1 second while the fault lasts" beside a CPU hog must fail
against it. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn low_priority:app
"""

from __future__ import annotations

import os

from users_api.main import create_app

__all__ = ["NICE", "app"]

NICE = 19  # the lowest priority: CFS weight 15, against 1024 at the normal nice 0

os.setpriority(os.PRIO_PROCESS, 0, NICE)
try:
    with open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write(str(NICE))
except FileNotFoundError:  # a kernel without autogroups: the process's own nice is its weight
    pass

app = create_app()
