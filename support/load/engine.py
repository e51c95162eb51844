"""Which engine sends a scenario's load: the suite's own worker (``native``) or Locust's master and workers.

Both give back a :class:`support.load.controller.LoadRun` with the same history,
progress and recovery watch, so nothing above this module knows which one ran.
"""

from __future__ import annotations

from pathlib import Path

from support.core.config import Settings
from support.load.controller import LoadRun, start_load
from support.load.locust_engine import start_locust_load
from support.load.spec import LoadSpec

__all__ = ["start_engine_load", "describe_engine"]


def start_engine_load(spec: LoadSpec, workdir: Path, settings: Settings) -> LoadRun:
    """Start ``spec`` on the engine ``settings.load_engine`` names; returns once its schedule has started."""
    if settings.load_engine == "locust":
        return start_locust_load(
            spec,
            workdir,
            workers=settings.locust_workers,
            remote_workers=settings.locust_remote_workers,
            bind=settings.locust_master_bind,
        )
    return start_load(spec, workdir)


def describe_engine(run: LoadRun) -> str:
    """One line for the evidence: which engine sends the load, its processes and (locust) its workers' clocks."""
    ready = run.started
    if ready.get("engine") != "locust":
        return f"native worker, pid {run.pid}, {ready.get('priority', 'normal')} scheduling"
    offsets = ", ".join(f"{ms:+.3f}" for ms in ready.get("clock_offsets_ms", {}).values())
    return (
        f"locust: master pid {run.pid}, {ready.get('workers')} workers (local pids"
        f" {', '.join(map(str, ready.get('worker_pids', []))) or 'none'}), {ready.get('users')} Locust users;"
        f" clock offsets to the suite {offsets} ms, error at most {ready.get('clock_error_ms', 0.0):g} ms"
    )
