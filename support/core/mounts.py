"""Filesystems of bounded size the suite mounts for a run (a tmpfs with a size), and their removal.

A fault that fills a disk fills only a filesystem the suite made for that
purpose, never a shared one (``/``, ``/tmp``): PostgreSQL's data directory goes
on a tmpfs of ``pg_disk_mb`` MiB mounted inside the run's directory (as root).
A run killed before it unmounts leaves the mount behind; the reaper and the
next run's clean-up unmount everything mounted below a dead run's directory
(:func:`unmount_below`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["MountError", "mount_tmpfs", "unmount", "mounts_below", "unmount_below", "fstype_of"]


class MountError(RuntimeError):
    """A filesystem could not be mounted or unmounted; the message is one line with the fix."""


def _mounts() -> list[tuple[Path, str]]:
    """(mount point, filesystem type) of every mount of this process's namespace (``/proc/self/mounts``)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            # the kernel escapes spaces and the like in octal (\040)
            point = fields[1].encode().decode("unicode_escape")
            found.append((Path(point), fields[2]))
    return found


def fstype_of(path: Path) -> str | None:
    """The filesystem type mounted exactly at ``path`` (``tmpfs``), or None when ``path`` is no mount point."""
    resolved = path.resolve()
    types = [fstype for point, fstype in _mounts() if point == resolved]
    return types[-1] if types else None


def mounts_below(directory: Path) -> list[Path]:
    """Mount points inside ``directory`` (itself included), deepest first (the order they unmount in)."""
    root = directory.resolve()
    points = {point for point, _ in _mounts() if point == root or root in point.parents}
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def mount_tmpfs(path: Path, mib: int, uid: int | None = None, gid: int | None = None) -> None:
    """Mount a tmpfs of ``mib`` MiB at ``path`` (made if missing), its root owned by ``uid``/``gid``, mode 0700.

    Needs root; raises :class:`MountError` in one line otherwise or when ``mount`` fails.
    """
    if os.geteuid() != 0:
        raise MountError(
            f"a bounded filesystem ({mib} MiB tmpfs) for PostgreSQL's data needs root to mount:"
            " run the suite as root, or set pg_disk_mb=0"
        )
    path.mkdir(parents=True, exist_ok=True)
    options = (
        f"size={mib}m,mode=0700"
        + (f",uid={uid}" if uid is not None else "")
        + (f",gid={gid}" if gid is not None else "")
    )
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "chaos-suite-disk", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        raise MountError(f"could not mount a {mib} MiB tmpfs at {path}: {' '.join(done.stderr.split())}")


def unmount(path: Path) -> None:
    """Unmount ``path`` (lazily: a process that still holds a file in it lets go when it dies); a no-op when
    nothing is mounted there. Raises :class:`MountError` in one line when ``umount`` fails."""
    if fstype_of(path) is None:
        return
    done = subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise MountError(f"could not unmount {path}: {' '.join(done.stderr.split())}")


def unmount_below(directory: Path) -> list[Path]:
    """Unmount every filesystem mounted inside ``directory``; the mount points unmounted."""
    points = mounts_below(directory)
    for point in points:
        unmount(point)
    return points
