"""One run of the suite: its settings, its directory, its stack, and the per-scenario routine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.backends.compose.backend import compose_project_of
from support.backends.reaper import Reaper, describe_removed, start_reaper
from support.core.config import Settings
from support.core.run_dirs import clean_leftovers, owner_record
from support.core.waiting import retry
from support.faults.host_residues import heal_host_residues
from support.faults.ledger import FaultLedger
from support.faults.residues import heal_residues
from support.proxy.link import add_load_link
from support.run.isolation import Isolation
from support.run.repeat import RepeatRun
from support.run.scenario import ScenarioState
from support.stack import database
from support.stack.stack import Stack
from support.stack.stack_file import stack_definition

__all__ = ["Suite", "start_suite", "install_signal_handlers"]


@dataclass
class Suite:
    """What lives for the whole run: settings, run directory and the running stack."""

    settings: Settings
    run_dir: Path
    stack: Stack
    scenarios: int = 0
    #: what removes the run's processes and containers if this process dies (None: not started)
    reaper: Reaper | None = field(default=None, repr=False)
    closed: bool = field(default=False, repr=False)
    isolation: Isolation = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.isolation = Isolation(self.stack, self.settings)

    def begin_scenario(self, name: str, repeat: RepeatRun | None = None) -> ScenarioState:
        """Make a fresh scenario state: the stack running and healthy, the users table empty; ``repeat``
        says which run of a repeated scenario it is."""
        self.scenarios += 1
        scenario_dir = self.run_dir / f"scenario-{self.scenarios:03d}"
        scenario_dir.mkdir()
        state = ScenarioState(
            name=name,
            stack=self.stack,
            settings=self.settings,
            work_dir=scenario_dir,
            ledger=FaultLedger(journal=self.run_dir / "faults.json"),
            repeat=repeat,
        )
        state.notes.update(self.isolation.prepare(name))  # a hung service restarted, or StackNotReady with its logs
        # the schema is the API's; it may still be creating it right after a start
        retry(
            lambda: database.reset(self.stack.admin_dsn, self.stack.workload),
            self.settings.healthy_timeout,
            "resetting the users table",
            retry_on=database.DatabaseError,
        )
        return state

    def end_scenario(self, state: ScenarioState) -> None:
        """Stop the load, heal every fault and bring every service back, whatever happened."""
        try:
            state.stop_load()
        finally:
            try:
                state.ledger.heal_all()
            finally:
                self.isolation.bring_back()  # no wait: a hung service is the next prepare's to find and restart

    def close(self) -> None:
        """Stop the stack and remove the run directory (kept when ``keep_work_dir`` is set); idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.stack.close()
        finally:
            if self.reaper is not None:
                self.reaper.close()  # its sweep finds nothing after a clean close; it exits before we do
            if not self.settings.keep_work_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)


def _backend_starter(settings: Settings, compose: bool):
    if compose:  # a compose file as the stack file: the user's own Compose project
        from support.backends.compose.backend import start_compose_stack

        return start_compose_stack
    if settings.backend == "attached":
        from support.backends.attached import start_attached_stack

        return start_attached_stack
    if settings.backend == "docker":
        from support.backends.docker.backend import start_docker_stack

        return start_docker_stack
    from support.backends.process.backend import start_process_stack

    return start_process_stack


def start_suite(settings: Settings) -> Suite:
    """Make this run's directory and start the stack on the configured backend."""
    # refuse a bad stack file (or a compose file Compose refuses) before making or starting anything
    compose = compose_project_of(settings) is not None
    if not compose:
        stack_definition(settings)
    root = settings.work_root_path
    if not root.exists():
        root.mkdir(parents=True)
        root.chmod(0o755)  # PostgreSQL runs as an unprivileged user and must enter it
    cleaned = clean_leftovers(root)
    if cleaned.run_dirs:
        removed = describe_removed({"run directory": [d.name for d in cleaned.run_dirs], "process": cleaned.processes})
        print(f"chaos-suite: removed what runs that were killed left: {removed}", file=sys.stderr)
    for line in heal_host_residues(root):  # a cgroup a killed run's limit left
        print(f"chaos-suite: {line}", file=sys.stderr)
    run_dir = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir()
    _write_run_record(run_dir, settings)  # the owner first: a run killed while starting is a leftover too
    on_docker = compose or settings.backend == "docker"
    reaper = start_reaper(run_dir, docker=on_docker) if compose or settings.backend != "attached" else None
    try:
        stack = _backend_starter(settings, compose)(settings, run_dir)
        try:
            add_load_link(stack, run_dir)  # the load's requests through the fault proxy, for the HTTP faults
        except BaseException:
            stack.close()
            raise
        if settings.backend == "attached" and not compose:
            for line in heal_residues(root, stack.admin_dsn):
                print(f"chaos-suite: {line}", file=sys.stderr)
    except BaseException:
        if reaper is not None:
            reaper.close()
        if not settings.keep_work_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    _write_run_record(run_dir, settings, {name: str(stack.service(name).address) for name in stack.names})
    return Suite(settings, run_dir, stack, reaper=reaper)


def _write_run_record(run_dir: Path, settings: Settings, addresses: dict[str, str] | None = None) -> None:
    """``run.json``: the owning suite's PID (what leftover cleaning trusts) and where the services listen."""
    (run_dir / "run.json").write_text(
        json.dumps(
            {**owner_record(), "backend": settings.backend, "started": time.time(), "addresses": addresses or {}}
        )
    )


def install_signal_handlers() -> None:
    """Turn SIGTERM (and SIGHUP) into KeyboardInterrupt so cleanups run as they do for Ctrl-C."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
