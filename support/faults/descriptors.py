"""A service that cannot open more files: its processes' descriptor limit (``RLIMIT_NOFILE``) lowered.

The limit is set with prlimit(2) (what ``prlimit --nofile`` calls) on every
process of the service: on the process backend the PIDs of its tree, on
Docker the host PIDs of the container's processes (``docker inspect``'s main
PID and the processes below it). A process of another user (the container's
``app``) is changed by ``prlimit`` run as that user (``setpriv``, as root):
root without CAP_SYS_RESOURCE may not change it directly. A process that
holds more descriptors than the limit keeps them; the next ``open``, ``socket``
or ``accept`` fails with EMFILE. The heal gives each process that still runs
its limits back (a process that exited meanwhile, and one its restart policy
started since, has its own). Nothing outlives the run: the limits die with
the processes, which the reaper kills.

A client that keeps its connection alive (the suite's load does) needs no new
descriptor: only a client that connects anew does. :meth:`DescriptorLimit.with_new_clients`
makes them: while the limit holds, a new client connects to the service every
:data:`NEW_CLIENT_INTERVAL` s and sends one HTTP request (:class:`NewClients`);
what each got is the fault's evidence and what "every new client is answered
with 503" judges.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from support.core.run_dirs import process_start_time
from support.faults.base import FaultHadNoEffect
from support.faults.cgroups import FaultUnavailable
from support.faults.process import ServiceFault
from support.stack.services import Address

__all__ = [
    "DescriptorLimit",
    "NEW_CLIENT_INTERVAL",
    "NEW_CLIENT_TIMEOUT",
    "NewClient",
    "NewClients",
    "descriptor_limit",
    "open_descriptors",
    "set_descriptor_limit",
]

NEW_CLIENT_INTERVAL = 0.25  # s between two new clients while the limit holds
NEW_CLIENT_TIMEOUT = 2.0  # s a new client waits for its answer (connect included) before it gives up


def _ids(pid: int) -> tuple[int, int]:
    """The user and group of process ``pid`` when its real, effective and saved ids agree (else PermissionError)."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.split()
    uids, gids = {int(u) for u in status["Uid"][:3]}, {int(g) for g in status["Gid"][:3]}
    if len(uids) != 1 or len(gids) != 1:
        raise PermissionError(f"process {pid} has mixed user ids {sorted(uids)}; its limits cannot be changed as it")
    return uids.pop(), gids.pop()


def set_descriptor_limit(pid: int, soft: int, hard: int) -> None:
    """Set ``RLIMIT_NOFILE`` of process ``pid`` to ``soft``/``hard`` (prlimit(2)).

    A process of another user (a container's ``app``, PostgreSQL's ``nobody``) may have its limits
    changed by a process of its own user, without CAP_SYS_RESOURCE: then ``prlimit`` runs as that
    user and group (``setpriv``, as root). Raises PermissionError (one line) when neither works,
    ProcessLookupError when the process is gone.
    """
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        return
    except PermissionError:
        if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("prlimit") is None:
            raise PermissionError(
                "prlimit on a process of another user needs CAP_SYS_RESOURCE, or root with setpriv and"
                " prlimit (util-linux) to act as that user"
            ) from None
    uid, gid = _ids(pid)
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "prlimit",
            f"--pid={pid}",
            f"--nofile={soft}:{hard}",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        if not Path(f"/proc/{pid}").exists():
            raise ProcessLookupError(pid)
        raise PermissionError(f"prlimit as user {uid} failed: {' '.join(done.stderr.split())}")


def descriptor_limit(pid: int) -> tuple[int, int]:
    """The soft and hard ``RLIMIT_NOFILE`` of process ``pid``, read from ``/proc/PID/limits`` (which anyone may
    read, where prlimit(2) asks for the same rights as a change); ProcessLookupError when it is gone."""
    try:
        text = Path(f"/proc/{pid}/limits").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            unlimited = resource.RLIM_INFINITY
            return (unlimited if soft == "unlimited" else int(soft), unlimited if hard == "unlimited" else int(hard))
    raise ProcessLookupError(pid)


def open_descriptors(pid: int) -> int | None:
    """How many descriptors process ``pid`` holds now (``/proc/PID/fd``); None when that cannot be read."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass(frozen=True)
class NewClient:
    """What one new client got: ``status`` (None: no answer) or ``error``, ``start`` and ``end`` (monotonic s)."""

    start: float
    end: float
    status: int | None = None
    error: str = ""


class NewClients:
    """New clients of ``address``: from :meth:`start` to :meth:`stop`, one every ``interval`` s, each on a
    connection of its own (``Connection: close``), waiting at most ``timeout`` s for the status line.

    ``clients`` are the ones that ended before :meth:`stop` (a client still waiting then is not judged:
    the heal, not the service, would decide its answer); each runs in a daemon thread bounded by ``timeout``.
    """

    def __init__(
        self, address: Address, *, interval: float = NEW_CLIENT_INTERVAL, timeout: float = NEW_CLIENT_TIMEOUT
    ) -> None:
        self.address = address
        self.interval = interval
        self.timeout = timeout
        self.clients: list[NewClient] = []
        self.started = 0
        self._stopped_at: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-new-clients", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Start no more clients; the ones still waiting are left out (idempotent)."""
        with self._lock:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.started += 1
            threading.Thread(target=self._one, name="chaos-new-client", daemon=True).start()
            self._stop.wait(self.interval)  # the pace of the clients, not a synchronisation

    def _one(self) -> None:
        start = time.monotonic()
        status, error = None, ""
        request = f"GET / HTTP/1.1\r\nHost: {self.address}\r\nConnection: close\r\n\r\n".encode()
        try:
            with socket.create_connection((self.address.host, self.address.port), timeout=self.timeout) as conn:
                conn.settimeout(max(0.01, start + self.timeout - time.monotonic()))
                conn.sendall(request)
                line = conn.recv(64).split(b"\r\n", 1)[0].split()
                if len(line) >= 2 and line[1].isdigit():
                    status = int(line[1])
                else:
                    error = "server disconnected" if not line else f"malformed answer: {bytes(line[0])[:40]!r}"
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except OSError as exc:
            error = f"connection error: {exc}"[:120]
        end = time.monotonic()
        with self._lock:
            if self._stopped_at is None or end <= self._stopped_at:
                self.clients.append(NewClient(start, end, status, error))

    def summary(self) -> str:
        """One line on what the new clients got, for the evidence."""
        by = Counter(str(c.status) if c.status is not None else c.error for c in self.clients)
        slowest = max((c.end - c.start for c in self.clients), default=0.0)
        got = ", ".join(f"{what} x{n}" for what, n in by.most_common())
        return f"{len(self.clients)} new clients judged ({got or 'none'}), slowest {slowest:.2f} s"


@dataclass
class DescriptorLimit(ServiceFault):
    """Every process of ``service`` may hold at most ``files`` open descriptors (its soft limit; the hard one stays).

    ``held`` is what each process held when the limit was set (PID: descriptors), for the evidence;
    ``new_clients``, when set (:meth:`with_new_clients`), connect while the limit holds.
    """

    files: int = 64
    held: dict[int, int] = field(default_factory=dict)
    new_clients: NewClients | None = None
    _was: dict[int, tuple[int, int, int | None]] = field(default_factory=dict, repr=False)  # pid: soft, hard, start

    @property
    def name(self) -> str:
        return f"open files limited to {self.files}"

    def with_new_clients(self) -> DescriptorLimit:
        """This fault, with new clients connecting to the service while it holds (:class:`NewClients`)."""
        self.new_clients = NewClients(self.service.address)
        return self

    def inject(self) -> None:
        if not hasattr(self.service, "pids"):
            raise FaultUnavailable(
                f"{self.service.name} is not a process or container the suite started: its limits cannot be changed"
            )
        pids = self.service.pids()
        if not pids:
            raise FaultHadNoEffect(f"{self.service.name} runs no process whose descriptor limit could be lowered")
        for pid in pids:
            try:
                soft, hard = descriptor_limit(pid)
                # before the change: the heal restores it even if this process's change fails half-way
                self._was[pid] = (soft, hard, process_start_time(pid))
                # the soft limit only: raising a hard limit back needs CAP_SYS_RESOURCE, which root in a
                # container may lack, and a heal must always be able to undo what the fault did
                set_descriptor_limit(pid, min(self.files, hard), hard)
            except ProcessLookupError:
                self._was.pop(pid, None)
                continue
            except PermissionError as error:
                self._was.pop(pid, None)
                raise FaultUnavailable(
                    f"the suite may not change the descriptor limit of {self.service.name}'s process {pid}: {error}"
                ) from None
            held = open_descriptors(pid)
            if held is not None:
                self.held[pid] = held
        if not self._was:
            raise FaultHadNoEffect(f"every process of {self.service.name} exited before its limit could be set")
        self.active_since = time.monotonic()
        if self.new_clients is not None:
            self.new_clients.start()

    def heal(self) -> None:
        self.mark_effect_over()
        if self.new_clients is not None:
            self.new_clients.stop()  # first: a client that the heal would let in is not judged
        was, self._was = self._was, {}
        left = {}
        for pid, (soft, hard, started) in was.items():
            if started is not None and process_start_time(pid) != started:
                continue  # exited (its PID may be another process's now): nothing of the fault is left in it
            try:
                set_descriptor_limit(pid, soft, hard)
            except ProcessLookupError:
                continue
            except OSError:
                left[pid] = (soft, hard, started)
        if left:
            self._was = left  # a later heal tries these again
            raise OSError(f"could not give processes {sorted(left)} their descriptor limit back")
        notes = []
        if self.held:
            notes.append(f"{self.target}'s processes held {sum(self.held.values())} descriptors under the limit")
        if self.new_clients is not None:
            notes.append(self.new_clients.summary())
        self.heal_note = "; ".join(notes)
