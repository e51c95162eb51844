"""PostgreSQL out of disk space: the bounded filesystem its data directory lives on, filled to ENOSPC.

Only a filesystem the suite mounted for the purpose is ever filled (a tmpfs
of ``pg_disk_mb`` MiB, :mod:`support.core.mounts`: the process backend's data
directory lives on it, the Docker backend binds it into PostgreSQL's container
as its data volume, :mod:`support.backends.docker.disk`, and the fault fills it
from the host side); a data directory on a shared filesystem (``/``, ``/tmp``,
a named Docker volume) is refused, with the setting that fixes it. A filler file takes every free block (``fallocate``, then
writes until ENOSPC), and a keeper takes back any block PostgreSQL frees while
the fault holds (a crash removes temporary files), as a disk that another
writer fills would. The heal deletes the filler. What PostgreSQL did meanwhile
(a PANIC when a WAL write fails, the postmaster's crash restart, a startup that
could not write its checkpoint) is read from its log and noted for the
evidence. The filler lives on the tmpfs, which goes with the run: nothing
outlives a killed run but the mount (and on Docker the container that binds
it), which the reaper and the next run unmount (and remove), so the fault needs
no residue in the journal.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.core.mounts import fstype_of
from support.faults.base import FaultHadNoEffect
from support.faults.cgroups import FaultUnavailable
from support.faults.process import ServiceFault

__all__ = ["DiskFull", "FILLER", "what_postgres_did"]

FILLER = "chaos-suite-filler"
_CHUNK = 1024 * 1024
_KEEP_INTERVAL = 0.05  # s between looks for blocks PostgreSQL freed

#: what PostgreSQL's log says when it runs out of space, and what it does about it (log text: what it means)
_SIGNS = (
    ("No space left on device", "writes failed with ENOSPC"),
    ("PANIC", "a PANIC (a WAL write failed)"),
    ("terminating any other active server processes", "the postmaster restarted every process (crash recovery)"),
    ("all server processes terminated; reinitializing", "it reinitialized"),
    ("startup process", "its startup process failed"),
    ("shutting down because", "it shut down"),
    ("database system is ready to accept connections", "it was ready again"),
)


def what_postgres_did(log: str) -> str:
    """What a PostgreSQL log excerpt says it did about a full disk, in its order; "" when nothing of it."""
    seen = []
    for text, meaning in _SIGNS:
        if text in log and meaning not in seen:
            seen.append(meaning)
    first_panic = next((line for line in log.splitlines() if "PANIC" in line), "")
    said = first_panic.split("PANIC:", 1)[-1].strip() if first_panic else ""
    return "; ".join(seen) + (f' (first PANIC: "{said[:160]}")' if said else "")


def _free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


@dataclass
class DiskFull(ServiceFault):
    """Fill the bounded filesystem of ``service``'s data directory until ENOSPC; the heal frees it.

    ``filled`` is how many bytes the filler took when the disk was full; ``postgres_did`` what
    PostgreSQL's log said meanwhile (after the heal).
    """

    name: str = "disk full"
    filled: int = 0
    postgres_did: str = ""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _keeper: threading.Thread | None = field(default=None, repr=False)
    _path: Path | None = field(default=None, repr=False)
    _since: float = field(default=0.0, repr=False)

    def _disk(self) -> Path:
        disk = getattr(self.service, "disk_path", None)
        if disk is None:
            raise FaultUnavailable(
                f"{self.service.name}'s data directory is not on a filesystem the suite made, and the suite fills"
                " no shared one: run on the process, docker or compose backend as root with -D pg_disk_mb=256"
                " (its data directory then lives on a tmpfs of that size)"
            )
        if fstype_of(Path(disk)) != "tmpfs":
            raise FaultUnavailable(f"{disk} is not the tmpfs the suite mounted for {self.service.name}'s data")
        return Path(disk)

    def inject(self) -> None:
        disk = self._disk()
        self._stop.clear()
        self._path = disk / FILLER
        self._since = time.time()
        self._fill()
        if _free_bytes(disk) > _CHUNK:
            raise FaultHadNoEffect(f"{_free_bytes(disk)} bytes were still free on {disk} after filling it")
        self.active_since = time.monotonic()
        self._keeper = threading.Thread(target=self._keep, name="chaos-disk-keeper", daemon=True)
        self._keeper.start()

    def _fill(self) -> None:
        """Take every free block: fallocate most of it at once, then write until the kernel says ENOSPC."""
        assert self._path is not None
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            free = _free_bytes(self._path.parent)
            if free > 2 * _CHUNK:
                try:
                    os.posix_fallocate(fd, size, free - _CHUNK)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
            chunk = b"\0" * _CHUNK
            while True:
                try:
                    if os.write(fd, chunk) < len(chunk):
                        chunk = chunk[: max(1, len(chunk) // 2)]
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: len(chunk) // 2]
        finally:
            self.filled = os.fstat(fd).st_size
            os.close(fd)

    def _keep(self) -> None:
        # blocks PostgreSQL frees (a crash removes its temporary files) are taken back, as another writer would
        while not self._stop.wait(_KEEP_INTERVAL):
            try:
                if self._path is not None and _free_bytes(self._path.parent) > 0:
                    self._fill()
            except OSError:
                continue  # healed meanwhile (the filler is gone): the stop event ends the loop

    def heal(self) -> None:
        self.mark_effect_over()
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(5.0)
            self._keeper = None
        if self._path is None:
            return
        self._path.unlink(missing_ok=True)
        self._path = None
        logs = self.service.logs(self._since) if self._since else ""
        self.postgres_did = what_postgres_did(logs)
        self.heal_note = f"the filler took {self.filled / 1048576:.0f} MiB; PostgreSQL: " + (
            self.postgres_did or "nothing in its log about it"
        )
