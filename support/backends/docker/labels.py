"""Labels on everything the Docker backend creates, and the removal of what dead runs left behind.

Every container, volume and network of a run carries the run's id and its
owner: host name, PID and the PID's start time (so a reused PID does not keep
a dead run's leftovers alive). At start, a run removes what carries the label
of an owner that is gone on this host. Nothing without the labels is ever
touched; neither is anything whose owner is alive or on another host, nor a
volume a run asked to keep (``keep_work_dir``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = [
    "RUN_LABEL",
    "SERVICE_LABEL",
    "OWNER_HOST_LABEL",
    "OWNER_PID_LABEL",
    "OWNER_START_LABEL",
    "KEEP_LABEL",
    "Owner",
    "run_labels",
    "process_start_time",
    "owner_of",
    "RemovedResources",
    "remove_labelled",
    "remove_leftovers",
]

RUN_LABEL = "chaos-suite.run"
SERVICE_LABEL = "chaos-suite.service"
OWNER_HOST_LABEL = "chaos-suite.owner-host"
OWNER_PID_LABEL = "chaos-suite.owner-pid"
OWNER_START_LABEL = "chaos-suite.owner-start"
KEEP_LABEL = "chaos-suite.keep"


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22), or None if gone."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after its closing ')'
    return stat.rpartition(")")[2].split()[19]


@dataclass(frozen=True)
class Owner:
    """The process a run belongs to."""

    host: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start_time(pid) or "")

    def alive(self) -> bool | None:
        """True while the owner runs, False once it is gone, None when it is on another host (unknown)."""
        if self.host != socket.gethostname():
            return None
        return process_start_time(self.pid) == self.start


def run_labels(run_id: str, owner: Owner | None = None) -> dict[str, str]:
    """The labels of everything run ``run_id`` creates."""
    owner = owner or Owner.current()
    return {
        RUN_LABEL: run_id,
        OWNER_HOST_LABEL: owner.host,
        OWNER_PID_LABEL: str(owner.pid),
        OWNER_START_LABEL: owner.start,
    }


def owner_of(labels: Mapping[str, str] | None) -> Owner | None:
    """The owner named by a resource's labels, or None when they do not name one."""
    labels = labels or {}
    try:
        return Owner(labels[OWNER_HOST_LABEL], int(labels[OWNER_PID_LABEL]), labels[OWNER_START_LABEL])
    except (KeyError, ValueError):
        return None


@dataclass
class RemovedResources:
    """What a removal by label removed, by name, and what it could not remove (name: reason)."""

    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _dead(labels: Mapping[str, str] | None) -> bool:
    owner = owner_of(labels)
    return owner is not None and owner.alive() is False


def remove_labelled(
    client: DockerClient, label: str, wanted: Callable[[Mapping[str, str]], bool], into: RemovedResources
) -> RemovedResources:
    """Remove the containers (paused ones too, with their anonymous volumes), then the volumes (unless kept) and
    the networks that carry ``label`` (``name`` or ``name=value``) and whose labels ``wanted`` accepts."""
    import docker.errors

    selector = {"label": label}
    # v: a compose service whose image declares a VOLUME its file does not mount leaves an anonymous one
    found = [
        (c.name, c.labels, lambda c=c: c.remove(force=True, v=True), into.containers)
        for c in client.containers.list(all=True, filters=selector)
    ]
    found += [
        (v.name, v.attrs.get("Labels") or {}, lambda v=v: v.remove(force=True), into.volumes)
        for v in client.volumes.list(filters=selector)
        if (v.attrs.get("Labels") or {}).get(KEEP_LABEL) != "true"
    ]  # the run asked to keep its data
    found += [
        (n.name, n.attrs.get("Labels") or {}, n.remove, into.networks) for n in client.networks.list(filters=selector)
    ]
    for name, labels, remove, removed in found:
        if not wanted(labels):
            continue
        try:
            remove()
            removed.append(name)
        except docker.errors.NotFound:
            pass  # removed meanwhile by someone else
        except docker.errors.APIError as error:
            into.failed[name] = " ".join(str(error).split())
    return into


def remove_leftovers(client: DockerClient) -> RemovedResources:
    """Remove the containers, then the volumes and networks, of suite runs whose owner is gone on this host."""
    return remove_labelled(client, RUN_LABEL, _dead, RemovedResources())
