"""The Docker backend's bounded disk for PostgreSQL's data (``pg_disk_mb``): a host tmpfs bound into its container.

The suite mounts a tmpfs of ``pg_disk_mb`` MiB inside the run's directory (as
root, :func:`support.core.mounts.mount_tmpfs`, as the process backend does) and
binds it into the PostgreSQL container as its data volume; the disk-full fault
(:mod:`support.faults.disk`) fills it from the host side. Docker's own tmpfs
mount (``tmpfs={path: "size=..."}``) would not do: the engine empties it at
every container stop, so a kill fault, the restart policy's answer or a restart
would lose the cluster (seen here on dockerd 20.10: a file written in it is gone
after ``docker restart``); a ``local`` volume with ``type=tmpfs`` is unmounted
with its last container in the same way. The host mount lives as long as the
run: the stack's clean-up unmounts it after the container is removed, and after
a SIGKILL of the suite the reaper (or the next run's sweep of dead run
directories) unmounts it and removes the container, which frees the memory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from support.core.mounts import MountError, mount_tmpfs, unmount
from support.stack.services import ServiceError

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = ["mount_data_disk", "image_user"]


def image_user(client: DockerClient, image: str, labels: dict[str, str]) -> tuple[int, int]:
    """The uid and gid an image's processes run as (its ``USER``), read by running ``id`` in it (≈ 0.2 s)."""
    import docker.errors

    container = None
    try:
        container = client.containers.create(
            image, entrypoint=["sh", "-c", "echo $(id -u) $(id -g)"], labels=labels, network_mode="none"
        )
        container.start()
        container.wait(timeout=30)
        uid, gid = (int(part) for part in container.logs(stdout=True, stderr=False).decode().split())
    except (docker.errors.DockerException, ValueError, OSError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ServiceError(f"could not read which user the image {image} runs as: {reason}") from None
    finally:
        if container is not None:  # with the anonymous volume the image's VOLUME gave it
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(v=True, force=True)
    return uid, gid


def mount_data_disk(client: DockerClient, image: str, labels: dict[str, str], run_dir: Path, mib: int) -> Path:
    """Mount a tmpfs of ``mib`` MiB at ``run_dir``/disk-postgres, owned by the PostgreSQL image's user; its path.

    Raises :class:`ServiceError` in one line when it cannot be mounted (no root) or the image's user is unknown.
    """
    disk = run_dir / "disk-postgres"
    try:
        mount_tmpfs(disk, mib)  # refused in one line without root, before anything else is done
    except MountError as error:
        raise ServiceError(str(error)) from None
    try:
        os.chown(disk, *image_user(client, image, labels))  # initdb, as that user, makes its data directory in it
    except BaseException:
        unmount(disk)
        raise
    return disk
