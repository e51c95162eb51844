"""Finding PostgreSQL server binaries, and a user that may run them.

Search order: the ``pg_bin`` setting, ``pg_config --bindir``,
``/usr/lib/postgresql/*/bin`` (newest first), then the binaries shipped by the
``pgserver`` package from PyPI, so a machine with no PostgreSQL installed
still works after ``pip install -r requirements.txt``.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PgBinaries", "RunAs", "find_pg_binaries", "run_as_for", "PgNotFound"]

NEEDED = ("initdb", "postgres")


class PgNotFound(RuntimeError):
    """No usable PostgreSQL server binaries; the message says how to get some."""


@dataclass(frozen=True)
class PgBinaries:
    """A directory holding ``initdb`` and ``postgres``, and where it was found."""

    bindir: Path
    source: str

    def path(self, name: str) -> str:
        return str(self.bindir / name)

    def version(self) -> str:
        out = subprocess.run([self.path("postgres"), "--version"], capture_output=True, text=True, timeout=10)
        found = re.search(r"\d+(?:\.\d+)+", out.stdout) if out.returncode == 0 else None
        return found.group(0) if found else "unknown"


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user PostgreSQL runs as (``None`` fields: the current user)."""

    user: str | None = None
    uid: int | None = None
    gid: int | None = None

    def popen_kwargs(self) -> dict:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, -1 if self.gid is None else self.gid)  # -1: the group unchanged


def run_as_for(user: str) -> RunAs:
    """Whom PostgreSQL runs as: ``user`` when we are root (it refuses root), else ourselves."""
    if os.geteuid() != 0:
        return RunAs()
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PgNotFound(
            f"PostgreSQL cannot run as root and user {user!r} does not exist; "
            f"set pg_user to an existing unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise PgNotFound(f"pg_user={user!r} is root; PostgreSQL refuses root: name an unprivileged user")
    return RunAs(user, entry.pw_uid, entry.pw_gid)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in NEEDED)


def _candidates(configured: str) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    if configured:
        return [(Path(configured), "pg_bin setting")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            found.append((Path(out.stdout.strip()), "pg_config --bindir"))

    def version_key(path: str) -> tuple:
        name = Path(path).parent.name
        return tuple(int(p) if p.isdigit() else 0 for p in name.split("."))

    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True):
        found.append((Path(path), "/usr/lib/postgresql"))
    # located without importing: importing pgserver has side effects (platform dirs, warnings)
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        found.append((Path(spec.origin).parent / "pginstall" / "bin", "pgserver package"))
    return found


def _readable_by(run_as: RunAs, bindir: Path) -> bool:
    if run_as.uid is None:
        return True
    try:
        probe = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, timeout=10, **run_as.popen_kwargs()
        )
    except PermissionError:  # e.g. a virtualenv under /root, which others cannot enter
        return False
    return probe.returncode == 0


def _copy_for(run_as: RunAs, bindir: Path, cache_root: Path) -> Path:
    """Copy an install tree the unprivileged user cannot reach (e.g. under /root) to a shared cache.

    Wheels keep their shared libraries in a ``<package>.libs`` folder beside the
    package, found through a relative rpath: the copy keeps that layout.
    """
    tree = bindir.parent
    package = tree.parent
    # a digest stable across runs (hash() of a str changes per process): one copy per install tree
    target = cache_root / f"pginstall-{hashlib.sha256(str(tree).encode()).hexdigest()[:16]}"
    copied_bin = target / package.name / tree.name / bindir.name
    if not _has_server(copied_bin):
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(tree, staging / package.name / tree.name, symlinks=True)
        for libs in package.parent.glob(f"{package.name}.libs"):
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for root, _, _ in os.walk(staging):
            os.chmod(root, 0o755)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    cache_root.chmod(0o755)
    return copied_bin


def find_pg_binaries(configured: str, run_as: RunAs, cache_root: Path) -> PgBinaries:
    """The first usable server binaries in the search order, runnable by ``run_as``."""
    tried = []
    for bindir, source in _candidates(configured):
        if not _has_server(bindir):
            tried.append(str(bindir))
            continue
        if not _readable_by(run_as, bindir):
            cache_root.mkdir(parents=True, exist_ok=True)
            bindir = _copy_for(run_as, bindir, cache_root)
            source += f" (copied to {bindir} so {run_as.user} can run it)"
        return PgBinaries(bindir, source)
    if configured:
        raise PgNotFound(f"pg_bin={configured!r} holds no initdb/postgres; point it at a PostgreSQL bin directory")
    raise PgNotFound(
        "no PostgreSQL server binaries found (looked in: "
        f"{', '.join(tried) or 'nothing'}); run 'pip install -r requirements.txt' (pgserver) "
        "or 'apt-get install postgresql', or set pg_bin"
    )
