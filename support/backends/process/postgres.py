"""A ``kind = "postgres"`` service as a process: a private PostgreSQL cluster made with ``initdb`` in the run's directory.

:class:`PostgresProcess` listens on a free loopback port (TCP only), runs as the
unprivileged user of :func:`~support.backends.process.pg_binaries.run_as_for` when
the suite runs as root, and maps restart modes to ``smart``/``fast``/``immediate``
shutdowns. :mod:`support.backends.process.backend` creates its databases and roles.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from support.backends.process.pg_binaries import PgBinaries, RunAs
from support.backends.process.service import ProcessService
from support.backends.process.supervisor import ProcessSpec, SupervisedProcess
from support.core.mounts import MountError, mount_tmpfs, unmount
from support.core.ports import LOOPBACK, free_port
from support.core.run_dirs import child_env
from support.stack.readiness import check_listener, database_answers
from support.stack.services import ServiceError

__all__ = ["PostgresProcess"]

_SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class PostgresProcess(ProcessService):
    """A private PostgreSQL cluster; restart modes map to ``smart``/``fast``/``immediate`` shutdowns."""

    def __init__(
        self, bins: PgBinaries, run_as: RunAs, run_dir: Path, password: str, name: str = "postgres", disk_mb: int = 0
    ) -> None:
        self.bins = bins
        self.run_as = run_as
        self.disk_mb = disk_mb
        #: the bounded filesystem (a tmpfs of ``disk_mb`` MiB) the data directory lives on; None: the run dir's own
        self.disk_path: Path | None = run_dir / f"disk-{name}" if disk_mb > 0 else None
        data_parent = self.disk_path or run_dir
        self.data_dir = data_parent / ("pgdata" if name == "postgres" else f"pgdata-{name}")
        self.password = password
        port = free_port()
        argv = [
            bins.path("postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(port),
            # TCP on loopback only; no Unix socket (its path length limit bites in deep run dirs)
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=100",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "log_line_prefix=%m [%p] %a ",
            "-c",
            "logging_collector=off",
        ]
        spec = ProcessSpec(
            argv=argv,
            env=child_env(run_dir),
            cwd=run_dir,
            log_path=run_dir / f"{name}.log",
            stop_signal=signal.SIGINT,
            popen_kwargs=run_as.popen_kwargs(),
        )
        super().__init__(name, port, SupervisedProcess(name, spec))

    def initdb(self) -> None:
        """Create the cluster with a superuser ``postgres`` whose password is ``self.password``.

        With ``disk_mb``, the data directory goes on a tmpfs of that size mounted for it first (root only).
        """
        if self.disk_path is not None:
            try:
                mount_tmpfs(self.disk_path, self.disk_mb, self.run_as.uid, self.run_as.gid)
            except MountError as error:
                raise ServiceError(str(error)) from None
        reach = subprocess.run(["test", "-x", str(self.data_dir.parent)], timeout=10, **self.run_as.popen_kwargs())
        if reach.returncode != 0:
            raise ServiceError(
                f"PostgreSQL runs as {self.run_as.user} and cannot enter {self.data_dir.parent}: "
                "set work_root to a directory every user can enter (the default is under /tmp)"
            )
        self.data_dir.mkdir(mode=0o700)
        self.run_as.chown(self.data_dir)
        pwfile = self.data_dir.parent / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self.run_as.chown(pwfile)
        try:
            done = subprocess.run(
                [
                    self.bins.path("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                env=child_env(self.data_dir.parent),
                cwd=self.data_dir.parent,
                **self.run_as.popen_kwargs(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceError(
                f"initdb failed ({self.bins.bindir}): {done.stderr.strip().splitlines()[-1:]}",
                logs=done.stdout + done.stderr,
            )

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A libpq DSN for this cluster."""
        return f"host={LOOPBACK} port={self._port} dbname={dbname} user={user} password={password or self.password}"

    def _stop_signal(self, mode: str) -> int | None:
        try:
            return _SHUTDOWN_SIGNALS[mode]
        except KeyError:
            raise ValueError(f"unknown restart mode {mode!r}; use one of: {', '.join(_SHUTDOWN_SIGNALS)}") from None

    def close(self) -> None:
        super().close()
        if self.disk_path is not None:
            unmount(self.disk_path)

    def is_ready(self) -> bool:
        check_listener(self._port, self.pid, self.name)  # an answer from another process is not ours
        return database_answers(self.dsn())
