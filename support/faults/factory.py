"""The faults a scenario can inject, made from the stack and the settings: steps name only what the Gherkin says.

The factory knows what a step should not: the superuser DSN, the service's
database role, the workload's table, the proxied links, and the settings'
timeouts (``start_timeout`` for every fault that waits for a service to come
back). It only makes faults; the scenario's ledger injects, holds and heals
them.
"""

from __future__ import annotations

import signal
from pathlib import Path

from support.core.config import Settings
from support.faults.admin import api_role
from support.faults.clock import ClockOffset
from support.faults.concurrency import Deadlocks, RowsHeld, StatementsCancelled
from support.faults.cpu_hog import CpuHog
from support.faults.database import ReadOnlyDatabase, SlowStatements, TableLock, TerminateBackends
from support.faults.descriptors import DescriptorLimit
from support.faults.disk import DiskFull
from support.faults.graceful import GracefulRestart
from support.faults.http import HttpFault, http_abort, http_delay, http_replace
from support.faults.limits import CpuLimit, MemoryLimit
from support.faults.network import LinkDown, LinkLatency, LinkReset, LinkStall, LinkToxic
from support.faults.process import ServiceKill, ServicePause, ServiceRestart, ServiceStop, StackRestart
from support.faults.serialization import SerializationFailures
from support.faults.slots import SlotExhaustion
from support.stack.stack import Stack

__all__ = ["FaultFactory"]


class FaultFactory:
    """Faults on ``stack``, with the timeouts of ``settings``; reached as ``context.chaos.faults``."""

    def __init__(self, stack: Stack, settings: Settings, work_dir: Path | None = None) -> None:
        self.stack = stack
        self.settings = settings
        #: where a fault that runs a process of its own (a CPU hog) keeps its log; marked with the run
        self.work_dir = work_dir

    # -- a service's process life ----------------------------------------------------------
    def restart(self, service: str, mode: str = "fast") -> ServiceRestart:
        """Restart ``service`` (``fast`` or ``immediate``); it must be ready within ``start_timeout`` s."""
        return ServiceRestart(self.stack.service(service), self.settings.start_timeout, mode)

    def kill(self, service: str, sig: int = signal.SIGKILL) -> ServiceKill:
        """Kill ``service`` with ``sig``; healed by making sure it runs again within ``start_timeout`` s."""
        return ServiceKill(self.stack.service(service), self.settings.start_timeout, sig)

    def stop(self, service: str) -> ServiceStop:
        """Stop ``service``; healed by starting it again within ``start_timeout`` s."""
        return ServiceStop(self.stack.service(service), self.settings.start_timeout)

    def pause(self, service: str) -> ServicePause:
        """Freeze ``service`` (SIGSTOP / docker pause)."""
        return ServicePause(self.stack.service(service))

    def restart_stack(self) -> StackRestart:
        """Stop every service and start them all again, each within ``start_timeout`` s."""
        return StackRestart(self.stack.restart_all, self.stack.ensure_running, self.settings.start_timeout)

    # -- a service's clock and its deploys (features/time, features/recovery/graceful_restart.feature) ---------
    def clock_offset(self, service: str, seconds: float, jump: bool = False) -> ClockOffset:
        """``service``'s wall clock moved ``seconds`` (negative: behind) through libfaketime, live."""
        return ClockOffset(self.stack.service(service), seconds, jump)

    def graceful_restart(self, service: str) -> GracefulRestart:
        """SIGTERM to ``service``, its exit awaited (SIGKILL after ``start_timeout`` s), started again within it."""
        return GracefulRestart(self.stack.service(service), self.settings.start_timeout)

    # -- the network between two services -------------------------------------------------------
    def latency(self, one: str, other: str, ms: float, jitter_ms: float = 0) -> LinkToxic:
        """``ms`` milliseconds (± a uniform ``jitter_ms``) added to every reply on the link between ``one`` and
        ``other``."""
        return LinkLatency(self.stack.link(one, other), ms, jitter_ms)

    def bandwidth(self, one: str, other: str, kilobytes_per_second: float) -> LinkToxic:
        """Replies on the link between ``one`` and ``other`` paced at ``kilobytes_per_second`` KB/s (1 KB = 1000 B)."""
        return LinkToxic(self.stack.link(one, other), "bandwidth", {"rate": max(1, int(kilobytes_per_second))})

    def stall(self, one: str, other: str) -> LinkStall:
        """Nothing flows either way between ``one`` and ``other``; connections stay open."""
        return LinkStall(self.stack.link(one, other))

    def slow_close(self, one: str, other: str, ms: float) -> LinkToxic:
        """The close of every connection from ``other`` to ``one`` reaches ``one`` ``ms`` milliseconds late."""
        return LinkToxic(self.stack.link(one, other), "slow_close", {"delay": int(ms)})

    def limit_data(self, one: str, other: str, kilobytes: float) -> LinkToxic:
        """Every connection between ``one`` and ``other`` is closed once ``kilobytes`` KB more of replies passed."""
        return LinkToxic(self.stack.link(one, other), "limit_data", {"bytes": max(1, int(kilobytes * 1000))})

    def cut(self, one: str, other: str) -> LinkDown:
        """The link between ``one`` and ``other`` down: connections refused and cut."""
        return LinkDown(self.stack.link(one, other))

    def reset(self, one: str, other: str) -> LinkReset:
        """Every open connection between ``one`` and ``other`` reset at once."""
        return LinkReset(self.stack.link(one, other))

    # -- PostgreSQL from the inside ----------------------------------------------------------------
    def terminate_api_sessions(self) -> TerminateBackends:
        """Every session of the API's database role terminated."""
        return TerminateBackends(self.stack.admin_dsn, self._api_role())

    def lock_table(self) -> TableLock:
        """An ``ACCESS EXCLUSIVE`` lock on the workload's table."""
        return TableLock(self.stack.admin_dsn, self.stack.workload.table)

    def exhaust_slots(self) -> SlotExhaustion:
        """Every connection slot taken; the API's role may open no new session meanwhile."""
        return SlotExhaustion(self.stack.admin_dsn, service_role=self._api_role())

    def read_only(self) -> ReadOnlyDatabase:
        """Every transaction of every session read-only."""
        return ReadOnlyDatabase(self.stack.admin_dsn)

    def slow_statements(self, delay: float) -> SlowStatements:
        """Every statement of the API touching the workload's table waits ``delay`` s first."""
        return SlowStatements(self.stack.admin_dsn, delay, self.stack.workload.table)

    def deadlocks(self) -> Deadlocks:
        """The API's writes to the workload's table deadlock with a session that takes the same row locks in
        the opposite order."""
        return Deadlocks(self.stack.admin_dsn, self.stack.workload.table)

    def serialization_failures(self) -> SerializationFailures:
        """The server's transactions SERIALIZABLE and the API's writes to the workload's table contending for a hot
        counter row with the fault's session: they fail with SQLSTATE 40001."""
        return SerializationFailures(self.stack.admin_dsn, self.stack.workload.table)

    def hold_rows(self) -> RowsHeld:
        """Every row of the workload's table locked ``FOR UPDATE`` by a transaction left idle."""
        return RowsHeld(self.stack.admin_dsn, self.stack.workload.table)

    def cancel_statements(self, once: bool = False) -> StatementsCancelled:
        """The API's running statements cancelled (``pg_cancel_backend``): all of them while held, or one; its
        writes to the workload's table sleep in a trigger of the fault's meanwhile, so there is one to cancel."""
        return StatementsCancelled(self.stack.admin_dsn, self._api_role(), self.stack.workload.table, once=once)

    # -- a service's resources: CPU, memory, descriptors ---------------------------------------------
    def cpu_limit(self, service: str, percent: float) -> CpuLimit:
        """``service`` may use ``percent`` % of one CPU (cgroup quota / ``docker update``)."""
        return CpuLimit(self.stack.service(service), percent=percent)

    def memory_limit(self, service: str, megabytes: float) -> MemoryLimit:
        """``service`` may hold ``megabytes`` MiB; restarted under the limit (stop within ``start_timeout`` s) when it holds more."""
        return MemoryLimit(self.stack.service(service), megabytes=megabytes, timeout=self.settings.start_timeout)

    def cpu_hog(self, service: str) -> CpuHog:
        """``stress-ng`` busy on every CPU beside ``service``, for at most ``load_max_duration`` s."""
        work_dir = self.work_dir or self.settings.work_root_path
        return CpuHog(self.stack.service(service), work_dir=work_dir, max_seconds=self.settings.load_max_duration)

    def descriptor_limit(self, service: str, files: int) -> DescriptorLimit:
        """Every process of ``service`` may hold at most ``files`` open descriptors (prlimit)."""
        return DescriptorLimit(self.stack.service(service), files=files)

    def disk_full(self, service: str) -> DiskFull:
        """The bounded filesystem of ``service``'s data directory filled to ENOSPC (``pg_disk_mb``)."""
        return DiskFull(self.stack.service(service))

    # -- HTTP between services (support.faults.http; features/network/http_faults.feature) ---------------
    def http_replace(self, client: str, server: str, percent: float, status: int, retry_after: int = 0) -> HttpFault:
        """``percent`` % of the requests from ``client`` to ``server`` answered ``status`` in the server's place."""
        return http_replace(self.stack.link(client, server), status, percent, retry_after)

    def http_abort(self, client: str, server: str, percent: float) -> HttpFault:
        """``percent`` % of the requests from ``client`` to ``server`` have their connection closed unanswered."""
        return http_abort(self.stack.link(client, server), percent)

    def http_delay(self, client: str, server: str, ms: float, percent: float = 100.0) -> HttpFault:
        """``percent`` % of the requests from ``client`` to ``server`` held ``ms`` ms before they go on."""
        return http_delay(self.stack.link(client, server), ms, percent)

    def _api_role(self) -> str:
        return api_role(self.stack.app_dsn)
