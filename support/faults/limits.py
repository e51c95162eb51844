"""A service's CPU or memory limited, as a container's limits are: a cgroup on the process backend, ``docker update`` on Docker.

Process backend (cgroup v1, as root): the service's processes move into a
child cgroup of the suite (:mod:`support.faults.cgroups`) with the limit, and a
keeper thread moves every new process of the service in while the fault holds
(its restart policy's new process included, as a container's restart stays
under its limits); the heal moves them back out and removes the cgroup.
Docker and Compose backends: ``container.update`` sets the limit and the heal
restores what ``docker inspect`` said before.

CPU: ``n`` percent of one CPU (Docker's ``--cpus`` in percent): a CFS quota of
``n`` ms per 100 ms period. What the kernel throttled is noted for the evidence.

Memory: ``n`` MB (MiB) of memory and of memory plus swap, so the service cannot
swap its way out. Under cgroup v1 a limit below what a running process holds
cannot be applied to it: the engine refuses (EBUSY), and a process moved into
a new cgroup leaves what it holds charged to the old one. So when the service
holds more than the limit, the fault restarts it under the limit, as a deploy
with that limit would: the kernel's OOM killer then kills it as it grows, and
its restart policy starts it again, under the limit, until the heal. The OOM
kills (the cgroup's ``oom_kill`` counter) and restarts are noted for the evidence.
Docker cannot remove a memory limit once set: its heal sets the machine's RAM
as the limit, and says so.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.faults.cgroups import ChildCgroup, FaultUnavailable, cgroup_of, unavailable
from support.faults.process import ServiceFault

__all__ = ["CpuLimit", "MemoryLimit", "CFS_PERIOD_US", "MIB"]

CFS_PERIOD_US = 100_000
MIB = 1024 * 1024
KEEP_INTERVAL = 0.01  # s between looks for new processes of the service (a restarted one must not run long outside)


def _on_docker(service: Any) -> bool:
    return hasattr(service, "update_limits")


def _pids(service: Any) -> list[int]:
    if not hasattr(service, "pids"):
        raise FaultUnavailable(
            f"{service.name} is not a process or container the suite started: its limits cannot be changed"
        )
    return list(service.pids())


def _stat(path: Path | None) -> dict[str, int]:
    """A cgroup's ``key value`` file (``cpu.stat``, ``memory.oom_control``) as a dict; {} when unreadable."""
    if path is None:
        return {}
    try:
        pairs = [line.split() for line in path.read_text().splitlines()]
    except OSError:
        return {}
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


@dataclass
class _CgroupLimit(ServiceFault):
    """What a CPU and a memory limit share: the child cgroup and its keeper (process), or ``docker update``."""

    controller = ""
    _cgroup: ChildCgroup | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _keeper: threading.Thread | None = field(default=None, repr=False)
    _was: dict[str, Any] | None = field(default=None, repr=False)  # the container's limits before, once changed
    _stat_path: Path | None = field(default=None, repr=False)
    _stat_before: dict[str, int] = field(default_factory=dict, repr=False)
    _restarts_before: int = field(default=0, repr=False)

    def _limit_files(self) -> dict[str, int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _docker_limits(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _docker_unlimits(self, was: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- inject ------------------------------------------------------------------------------
    def inject(self) -> None:
        self._stop.clear()
        self._restarts_before = int(getattr(self.service, "restarts", 0))
        if _on_docker(self.service):
            self._inject_docker()
        else:
            self._inject_cgroup()
        self.active_since = time.monotonic()

    def _inject_cgroup(self) -> None:
        reason = unavailable(self.controller)
        if reason:
            raise FaultUnavailable(reason)
        pids = _pids(self.service)
        self._cgroup = ChildCgroup(self.controller, self.service.name)
        self._cgroup.planned_path()  # known before it exists: the journal holds it (residue)
        self._cgroup.create()
        for name, value in self._limit_files().items():
            if self._cgroup.has(name):
                self._cgroup.write(name, value)
        self._stat_path = self._cgroup.planned_path() / self._stat_file()
        self._before_move(pids)
        self._cgroup.add(pids)
        self._after_move()
        self._keeper = threading.Thread(target=self._keep, name=f"chaos-{self.controller}-keeper", daemon=True)
        self._keeper.start()

    def _before_move(self, pids: list[int]) -> None:
        """Hook: what a limit must know of the service before it is limited."""

    def _after_move(self) -> None:
        """Hook: what a limit does once the service is in its cgroup."""

    def _keep(self) -> None:
        # a process the service starts while limited (its restart policy's, a new backend) joins the cgroup
        cgroup = self._cgroup
        assert cgroup is not None
        while not self._stop.wait(KEEP_INTERVAL):
            try:
                cgroup.add(self.service.pids())  # type: ignore[attr-defined]
            except OSError:
                continue  # the cgroup went (healed meanwhile) or a process raced us: the next look decides

    def _inject_docker(self) -> None:
        self._was = {}  # before the update: heal restores even if the engine's answer is lost
        config = self.service.host_config()  # type: ignore[attr-defined]
        self._was = {key: config.get(key) for key in ("CpuQuota", "CpuPeriod", "Memory", "MemorySwap")}
        pids = _pids(self.service)
        if pids:
            try:
                self._stat_path = cgroup_of(pids[0], self.controller) / self._stat_file()
            except OSError:
                self._stat_path = None
        self._stat_before = _stat(self._stat_path)
        self._apply_docker()

    def _apply_docker(self) -> None:
        self.service.update_limits(**self._docker_limits())  # type: ignore[attr-defined]

    def _stat_file(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- heal ----------------------------------------------------------------------------------
    def heal(self) -> None:
        self.mark_effect_over()
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(5.0)
            self._keeper = None
        if self._cgroup is not None:
            stats = _stat(self._stat_path)
            self._cgroup.remove()
            self._cgroup = None
            self._note(stats)
        if self._was is not None:
            was = self._was
            self.service.update_limits(**self._docker_unlimits(was))  # type: ignore[attr-defined]
            self._was = None
            self._note({k: v - self._stat_before.get(k, 0) for k, v in _stat(self._stat_path).items()}, was)

    def _note(self, stats: dict[str, int], was: dict[str, Any] | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def residue(self) -> dict | None:
        """A cgroup outlives a killed run (a container does not: the reaper removes it)."""
        if self._cgroup is None or self._cgroup.path is None:
            return None
        return {"kind": "cgroup", "host": True, "path": str(self._cgroup.path)}


@dataclass
class CpuLimit(_CgroupLimit):
    """``service`` may use ``percent`` % of one CPU (a CFS quota of ``percent`` ms per 100 ms)."""

    percent: float = 100.0
    controller = "cpu"

    @property
    def name(self) -> str:
        return f"CPU limited to {self.percent:g}%"

    def _quota(self) -> int:
        return max(1000, round(CFS_PERIOD_US * self.percent / 100))  # the kernel refuses a quota under 1 ms

    def _limit_files(self) -> dict[str, int]:
        return {"cpu.cfs_period_us": CFS_PERIOD_US, "cpu.cfs_quota_us": self._quota()}

    def _docker_limits(self) -> dict[str, Any]:
        return {"cpu_period": CFS_PERIOD_US, "cpu_quota": self._quota()}

    def _docker_unlimits(self, was: dict[str, Any]) -> dict[str, Any]:
        quota = was.get("CpuQuota") or -1  # 0 (never set) is "no change" to the engine; -1 is "no quota"
        return {"cpu_quota": quota, "cpu_period": was.get("CpuPeriod") or CFS_PERIOD_US}

    def _stat_file(self) -> str:
        return "cpu.stat"

    def _note(self, stats: dict[str, int], was: dict[str, Any] | None = None) -> None:
        if stats.get("nr_periods"):
            self.heal_note = (
                f"the kernel throttled {self.target} in {stats.get('nr_throttled', 0)} of {stats['nr_periods']}"
                f" periods of 100 ms ({stats.get('throttled_time', 0) / 1e9:.2f} s throttled)"
            )


@dataclass
class MemoryLimit(_CgroupLimit):
    """``service`` may hold ``megabytes`` MiB (memory and swap); restarted under it when it holds more (see the module).

    ``timeout`` (s) bounds the stop of a restart under the limit. ``restarted_under_limit``
    says whether it was; ``oom_kills`` how many processes the kernel's OOM killer
    killed in the service while limited (after the heal).
    """

    megabytes: float = 0.0
    timeout: float = 10.0
    controller = "memory"
    restarted_under_limit: bool = False
    held_mib: float = 0.0
    oom_kills: int = 0
    _restart_pending: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return f"memory limited to {self.megabytes:g} MB"

    def _bytes(self) -> int:
        return int(self.megabytes * MIB)

    def _limit_files(self) -> dict[str, int]:
        # memsw must stay >= memory: the memory limit is written first (dicts keep their order)
        return {"memory.limit_in_bytes": self._bytes(), "memory.memsw.limit_in_bytes": self._bytes()}

    def _before_move(self, pids: list[int]) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        held = 0
        for pid in pids:
            try:
                held += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            except (OSError, IndexError, ValueError):
                continue
        self.held_mib = held / MIB

    def _after_move(self) -> None:
        if self.held_mib > self.megabytes:
            # what it holds stays charged elsewhere (cgroup v1): only a process started under the limit is bound by it
            self.restarted_under_limit = self._restart_pending = True
            self.service.kill()  # its restart policy starts it again; the keeper moves the new process in

    def _docker_limits(self) -> dict[str, Any]:
        return {"mem_limit": self._bytes(), "memswap_limit": self._bytes()}

    def heal(self) -> None:
        super().heal()
        if self._restart_pending:
            # restarted under the limit, restarted without it: the restart policy's back-off after a run
            # of OOM kills (Docker's doubles without bound) would otherwise delay the service for seconds
            # stop and start, each with its own deadline: a stop that waits out a restart in progress must
            # not leave the start no time (docker restart shares one deadline between them)
            self.service.stop(self.timeout)
            self.service.start(self.timeout)
            self._restart_pending = False
            self.heal_note += "; restarted without the limit"

    def _apply_docker(self) -> None:
        try:
            super()._apply_docker()
        except Exception as error:  # noqa: BLE001 - only "holds more than the limit" is answered by a restart
            if "unable to set memory limit" not in str(error) and "resource busy" not in str(error):
                raise
            self.restarted_under_limit = self._restart_pending = True
            self.service.restart_with_limits(self.timeout, **self._docker_limits())  # type: ignore[attr-defined]

    def _docker_unlimits(self, was: dict[str, Any]) -> dict[str, Any]:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = was.get("Memory") or ram  # an engine cannot unset a memory limit: the machine's RAM is none
        swap = was.get("MemorySwap") or 0
        return {"mem_limit": memory, "memswap_limit": swap if swap >= memory else memory}

    def _stat_file(self) -> str:
        return "memory.oom_control"

    def _note(self, stats: dict[str, int], was: dict[str, Any] | None = None) -> None:
        self.oom_kills = max(0, stats.get("oom_kill", 0))
        restarts = int(getattr(self.service, "restarts", 0)) - self._restarts_before
        parts = []
        if self.restarted_under_limit:
            parts.append(
                f"{self.target} held more than the limit and was restarted under it"
                + (f" (it held {self.held_mib:.0f} MiB)" if self.held_mib else "")
            )
        parts.append(f"the kernel OOM-killed {self.oom_kills} process(es) of {self.target}")
        parts.append(f"its restart policy restarted it {max(0, restarts)} time(s)")
        if was is not None and not was.get("Memory"):
            parts.append("Docker cannot unset a memory limit: the machine's RAM is its limit now")
        self.heal_note = "; ".join(parts)
