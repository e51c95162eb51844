"""The stack's images: built from ``stack/docker/*.Dockerfile`` and reused while their inputs are unchanged.

The build context of each image is a tar made here from exactly the files its
Dockerfile copies (paths relative to ``stack/``, as in ``stack/compose.yaml``),
with fixed owners and times, so its hash is the hash of the inputs. The image
is labelled with that hash together with the base image's id and the build
arguments; a build is skipped when an image with the label exists.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from support import REPO_ROOT
from support.stack.services import ServiceError

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = [
    "ImageSpec",
    "BuiltImage",
    "IMAGE_SPECS",
    "INPUTS_LABEL",
    "STACK_DIR",
    "context_tar",
    "inputs_digest",
    "ensure_image",
    "base_image_id",
    "service_image_spec",
    "ensure_ha_image",
]

STACK_DIR = REPO_ROOT / "stack"
INPUTS_LABEL = "chaos-suite.inputs"
_SKIP_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".git", ".venv", "node_modules"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class ImageSpec:
    """One image: its repository name, its Dockerfile and the context entries it copies (relative to ``stack/``)."""

    name: str
    dockerfile: str
    context: tuple[str, ...]

    @property
    def repository(self) -> str:
        return f"chaos-suite/{self.name}"


IMAGE_SPECS = {
    "postgres": ImageSpec("postgres", "docker/postgres.Dockerfile", ("docker/postgres-entrypoint.sh",)),
    "api": ImageSpec("api", "docker/api.Dockerfile", ("api/requirements.txt", "api/users_api")),
    # built on the api image (ensure_ha_image), and only when a replicated stack runs on Docker
    "ha": ImageSpec("ha", "docker/ha.Dockerfile", ("docker/ha-entrypoint.sh",)),
}


def service_image_spec(context: Path, dockerfile: str = "Dockerfile") -> ImageSpec:
    """A user's service image built from the folder ``context`` (all of it, less caches and .git),
    named after the folder; whether it is rebuilt depends on the content only."""
    return ImageSpec(f"service-{context.resolve().name.lower().replace('_', '-')}", dockerfile, (".",))


@dataclass(frozen=True)
class BuiltImage:
    """An image ready to run: its id, the tag it carries, whether this call built it and how long it took (s)."""

    id: str
    tag: str
    built: bool
    seconds: float


def _files(root: Path, entry: str) -> Iterator[tuple[str, Path]]:
    path = root / entry
    if not path.exists():
        raise ServiceError(f"the Docker build context lacks {path}; is the checkout complete?")
    if path.is_file():
        yield entry, path
        return
    base = root.resolve()
    for child in sorted(path.resolve().rglob("*")):
        relative = child.relative_to(base)
        if child.is_file() and not _SKIP_PARTS & set(relative.parts) and child.suffix not in _SKIP_SUFFIXES:
            yield relative.as_posix(), child


def context_tar(spec: ImageSpec, root: Path = STACK_DIR) -> bytes:
    """The build context of ``spec`` as an uncompressed tar, byte-identical for identical inputs."""
    entries = dict(_files(root, spec.dockerfile))
    for entry in spec.context:
        entries.update(_files(root, entry))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(entries):
            data = entries[name].read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            # only the executable bit is an input; owners and times are not
            info.mode = 0o755 if entries[name].stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def inputs_digest(context: bytes, base_id: str, buildargs: dict[str, str]) -> str:
    """sha256 over the build context, the base image's id and the build arguments."""
    digest = hashlib.sha256(context)
    digest.update(b"\0base\0" + base_id.encode())
    for key in sorted(buildargs):
        digest.update(f"\0arg\0{key}={buildargs[key]}".encode())
    return digest.hexdigest()


def base_image_id(client: DockerClient, base: str) -> str:
    """The id of the local base image ``base``; a clear error saying how to get it when it is missing."""
    import docker.errors

    try:
        return client.images.get(base).id
    except docker.errors.ImageNotFound:
        raise ServiceError(
            f"the base image {base} is not on this Docker engine: `docker pull {base}` where a registry is "
            f"reachable, or build it from Debian's packages with `bash stack/docker/build-base-image.sh {base}` "
            "(root, debootstrap); or set docker_base_image to an image you have"
        ) from None


def ensure_image(
    client: DockerClient,
    spec: ImageSpec,
    base: str,
    log_path: Path | None = None,
    root: Path = STACK_DIR,
    base_required: bool = True,
) -> BuiltImage:
    """The image for ``spec`` on ``base``, built only when no image carries its inputs' digest.

    Builds run their ``RUN`` steps on the host's network (apt and pip need
    it). ``base`` is passed as the ``BASE_IMAGE`` build argument; a user's
    Dockerfile may ignore it (``base_required`` False: a missing base is then
    no error, and the build finds its own ``FROM`` image or fails saying so).
    The build output goes to ``log_path``; a failed build raises
    :class:`ServiceError` with its last lines.
    """
    import docker.errors

    started = time.monotonic()
    buildargs = {"BASE_IMAGE": base}
    context = context_tar(spec, root)
    try:
        base_id = base_image_id(client, base)
    except ServiceError:
        if base_required:
            raise
        base_id = ""
    digest = inputs_digest(context, base_id, buildargs)
    tag = f"{spec.repository}:{digest[:16]}"
    existing = client.images.list(filters={"label": f"{INPUTS_LABEL}={digest}"})
    if existing:
        return BuiltImage(existing[0].id, tag, False, time.monotonic() - started)
    lines: list[str] = []
    try:
        image, output = client.images.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            dockerfile=spec.dockerfile,
            tag=tag,
            buildargs=buildargs,
            labels={INPUTS_LABEL: digest, "chaos-suite.image": spec.name},
            network_mode="host",
            rm=True,
            forcerm=True,
            pull=False,
        )
        lines = [chunk["stream"] for chunk in output if "stream" in chunk]
    except docker.errors.BuildError as error:
        lines = [chunk.get("stream") or chunk.get("error", "") for chunk in error.build_log]
        tail = "".join(lines)[-3000:]
        _write(log_path, lines)
        where = root / spec.dockerfile
        raise ServiceError(
            f"building the {spec.name} image from {where} failed: {error.msg}"
            + (f"; full output in {log_path}" if log_path else ""),
            logs=tail,
        ) from None
    _write(log_path, lines)
    _remove_superseded(client, spec, image.id)
    return BuiltImage(image.id, tag, True, time.monotonic() - started)


def ensure_ha_image(client: DockerClient, base: str, log_dir: Path) -> dict[str, BuiltImage]:
    """The replicated stack's image (Patroni, PostgreSQL, etcd, HAProxy) on the reference API's image, both built
    on ``base`` when their inputs changed; returned as ``{"api": ..., "ha": ...}``, build logs in ``log_dir``."""
    api = ensure_image(client, IMAGE_SPECS["api"], base, log_dir / "docker-build-api.log")
    # the api image's tag names exactly this build (its digest), so the ha image's digest follows it
    ha = ensure_image(client, IMAGE_SPECS["ha"], api.tag, log_dir / "docker-build-ha.log")
    return {"api": api, "ha": ha}


def _write(path: Path | None, lines: list[str]) -> None:
    if path is not None:
        path.write_text("".join(lines))


def _remove_superseded(client: DockerClient, spec: ImageSpec, keep_id: str) -> None:
    """Remove older builds of the same image; one still used by a container stays (the engine refuses)."""
    import docker.errors

    for image in client.images.list(name=spec.repository):
        if image.id != keep_id:
            for tag in image.tags:
                try:
                    client.images.remove(tag, noprune=False)
                except docker.errors.APIError:
                    pass  # in use by a container of another run: it goes with a later build


def main() -> int:
    """``python -m support.backends.docker.images``: build (or reuse) the stack's images and print what took how long."""
    import os
    import sys

    from support.backends.docker.engine import docker_client

    base = os.environ.get("CHAOS_DOCKER_BASE_IMAGE") or "debian:bookworm-slim"
    try:
        client = docker_client(timeout=1800)
        for spec in (IMAGE_SPECS["postgres"], IMAGE_SPECS["api"]):  # ha: built by the first HA run
            image = ensure_image(client, spec, base)
            print(f"docker-images: {image.tag} {'built' if image.built else 'reused'} in {image.seconds:.1f} s")
    except ServiceError as error:
        print(f"docker-images: {error}", file=sys.stderr)
        if error.logs:
            print(error.logs, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
