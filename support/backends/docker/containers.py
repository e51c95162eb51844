"""The Docker backend's service controllers: one container per service, driven through the engine.

:class:`ContainerService` gives a container the operations every service has
(start, stop, kill, restart, pause, resume, readiness, logs; see
:class:`support.stack.services.Service`); :class:`PostgresContainer` and
:class:`ApiContainer` add how each is ready. A kill is a crash as far as Docker
can tell: the signal is sent from inside the container to every process but
tini (``kill -1``), tini exits with the service, and the engine's
``unless-stopped`` policy restarts the container (``docker kill`` would not do:
the engine treats it as a manual stop and cancels the policy). The compose
backend drives the containers Compose made with the same classes.
"""

from __future__ import annotations

import math
import signal
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support.backends.docker.specs import UNLESS_STOPPED, ContainerSpec
from support.core.ports import LOOPBACK
from support.core.process_tree import descendants
from support.core.waiting import Deadline, WaitTimeout, wait_until
from support.stack.readiness import check_listener, database_answers, http_answers
from support.stack.services import Address, ServiceError

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = ["ContainerService", "PostgresContainer", "ApiContainer"]

_SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def _parse_stamp(stamp: str) -> float | None:
    # Docker's RFC 3339 stamps carry nanoseconds; datetime takes microseconds
    head, _, rest = stamp.partition(".")
    fraction = rest.rstrip("Z")[:6]
    try:
        return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00").timestamp()
    except ValueError:
        return None


class ContainerService:
    """One service as one container, with the :class:`support.stack.services.Service` operations."""

    def __init__(self, client: DockerClient, spec: ContainerSpec, port: int, container: Any = None) -> None:
        self.name = spec.service
        self.spec = spec
        self._client = client
        self._port = port
        # a container something else made (the compose backend: Compose did); else made from ``spec`` at start
        self._container = container
        self._closed = False

    # -- state ---------------------------------------------------------------
    @property
    def address(self) -> Address:
        return Address(LOOPBACK, self._port)

    @property
    def container_name(self) -> str:
        return self.spec.name

    def status(self) -> str:
        """The container's state as Docker says it (``running``, ``paused``, ``restarting``, ``exited``, ...)."""
        container = self._inspect()
        return "missing" if container is None else container.status

    def state(self) -> dict[str, Any]:
        """The container's ``State`` as ``docker inspect`` shows it ({} when there is no container)."""
        container = self._inspect()
        return (
            {}
            if container is None
            else dict(container.attrs.get("State", {}), RestartCount=container.attrs.get("RestartCount", 0))
        )

    @property
    def restarts(self) -> int:
        """How many times the engine's restart policy brought the container back."""
        return int(self.state().get("RestartCount", 0))

    def pids(self) -> list[int]:
        """Host PIDs of every live process of the container (its main process first); [] when it runs none.

        Read from ``docker inspect`` and the host's /proc: a process fault that acts on PIDs
        (descriptor limits) needs the host's view, which only root can act on.
        """
        pid = int(self.state().get("Pid") or 0)
        return [] if pid <= 0 else [pid, *descendants(pid)]

    def host_config(self) -> dict[str, Any]:
        """The container's ``HostConfig`` as ``docker inspect`` shows it (its limits among it); {} when missing."""
        container = self._inspect()
        return {} if container is None else dict(container.attrs.get("HostConfig") or {})

    def update_limits(self, **limits: Any) -> None:
        """``docker update``: change the container's resource limits while it runs (the SDK's
        ``Container.update`` arguments: ``cpu_quota``, ``cpu_period``, ``mem_limit``, ``memswap_limit``).

        Raises :class:`ServiceError` (one line: the engine's reason) when the engine refuses.
        """
        import docker.errors

        container = self._inspect()
        if container is None:
            raise ServiceError(f"there is no {self.name} container to limit")
        try:
            container.update(**limits)
        except docker.errors.APIError as error:
            reason = " ".join(str(error.explanation or error).split())
            raise ServiceError(f"the engine refused to update the {self.name} container's limits: {reason}") from None

    def restart_with_limits(self, timeout: float, **limits: Any) -> None:
        """Stop the container (within ``timeout`` s), change its limits as :meth:`update_limits` does, start it
        again and return without waiting for it to be ready (under a limit it cannot live in, it never is)."""
        import docker.errors

        self.stop(timeout)
        self.update_limits(**limits)
        container = self._inspect()
        if container is None:
            raise ServiceError(f"there is no {self.name} container to start")
        try:
            container.start()
        except docker.errors.APIError as error:
            raise ServiceError(f"could not start the {self.name} container: {error.explanation or error}") from None

    def _inspect(self):
        import docker.errors

        if self._container is None:
            return None
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return None
        return self._container

    # -- control ---------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Create the container if there is none, start it if it is not running, then wait until ready."""
        import docker.errors

        if self._closed:
            raise ServiceError(f"{self.name} is closed")
        deadline = Deadline(timeout)
        container = self._inspect()
        if container is None:
            try:
                self._container = container = self._client.containers.create(**self.spec.create_kwargs())
            except docker.errors.APIError as error:
                raise ServiceError(
                    f"could not create the {self.name} container: {error.explanation or error}"
                ) from None
        if container.status in ("created", "exited", "dead"):
            try:
                container.start()
            except docker.errors.APIError as error:
                # the restart policy may have started it meanwhile; only a container still down is a failure
                if self.status() not in ("running", "restarting"):
                    raise ServiceError(
                        f"could not start the {self.name} container {self.spec.name}: {error.explanation or error}",
                        logs=self._tail(),
                    ) from None
        # "running", "restarting" (the policy at work) and anything just started: wait in domain terms
        self.wait_ready(deadline.remaining())

    def stop(self, timeout: float = 10.0) -> None:
        """``docker stop``: the image's stop signal, SIGKILL after ``timeout`` s; stays down until :meth:`start`."""
        container = self._inspect()
        if container is None or container.status in ("created", "exited", "dead"):
            return
        # the engine counts whole seconds; rounding up never cuts a graceful stop short
        container.stop(timeout=max(1, math.ceil(timeout)))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of the container at once (not tini); the restart policy applies.

        Returns once the signal is sent, without waiting for the exit.
        """
        import docker.errors

        container = self._inspect()
        if container is None or container.status not in ("running", "paused"):
            return
        if container.status == "paused":
            container.unpause()  # nothing can be executed in a frozen container
        name = signal.Signals(sig).name.removeprefix("SIG")
        try:
            result = container.exec_run(["bash", "-c", f"kill -s {name} -1"], stdout=True, stderr=True)
        except docker.errors.APIError as error:
            if self.status() in ("running", "paused"):
                raise ServiceError(f"could not signal {self.name}: {error.explanation or error}") from None
            return  # it went down by itself meanwhile: the signal has nothing left to do
        # 128 + n: the exec itself died with the container (a signal that ends the service ends the exec too)
        if result.exit_code not in (0, None) and result.exit_code < 128:
            raise ServiceError(f"could not signal {self.name}: {result.output.decode(errors='replace').strip()}")

    def crash(self) -> None:
        """SIGKILL every process of the container at once and keep it down until :meth:`start` (a host that died):
        ``docker kill``, which the engine counts as a manual stop, so the restart policy does not bring it back."""
        import docker.errors

        container = self._inspect()
        if container is None or container.status not in ("running", "paused", "restarting"):
            return
        try:
            container.kill()
        except docker.errors.APIError as error:
            if self.status() in ("running", "paused"):
                raise ServiceError(f"could not kill {self.name}: {error.explanation or error}") from None

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop (PostgreSQL: the shutdown ``mode``; others: :meth:`stop`) and start; return once ready."""
        deadline = Deadline(timeout)
        sig = self._shutdown_signal(mode)
        container = self._inspect()
        if container is not None and container.status == "running" and sig in (None, self._stop_signal(container)):
            # the stop signal is what `docker restart` sends: one call, the shortest outage (here ≈ 0.3 s to
            # running again, against ≈ 0.5 s for update + signal + wait + start); SIGKILL after the deadline
            container.restart(timeout=max(1, math.ceil(deadline.remaining())))
        elif sig is None:
            self.stop(deadline.remaining())
        else:
            self._shutdown(sig, deadline)
        self.start(deadline.remaining())

    def _shutdown_signal(self, mode: str) -> int | None:
        return None

    @staticmethod
    def _stop_signal(container) -> int:
        name = container.attrs.get("Config", {}).get("StopSignal") or "SIGTERM"
        try:
            return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
        except KeyError:
            return int(name) if name.isdigit() else int(signal.SIGTERM)

    def _shutdown(self, sig: int, deadline: Deadline) -> None:
        """Ask the main process to exit with ``sig`` (through tini) and wait; SIGKILL when the deadline passes."""
        container = self._inspect()
        if container is None or container.status not in ("running", "paused", "restarting"):
            return
        # the engine would restart a container that exits on a signal other than its stop signal
        policy = dict(container.attrs.get("HostConfig", {}).get("RestartPolicy") or UNLESS_STOPPED)
        container.update(restart_policy={"Name": "no", "MaximumRetryCount": 0})
        try:
            if container.status == "paused":
                container.unpause()  # a frozen server could not act on the signal
            if container.status != "restarting":
                container.kill(signal=int(sig))
            if not self._wait_exit(container, deadline.remaining()):
                container.kill()
                self._wait_exit(container, 10.0)
        finally:
            container.update(restart_policy=policy)  # its own again (a compose file's may differ)

    @staticmethod
    def _wait_exit(container, timeout: float) -> bool:
        import requests

        try:
            # the engine answers when the container stops: no polling
            container.wait(timeout=max(0.1, timeout), condition="not-running")
            return True
        except requests.exceptions.RequestException:
            return False

    def pause(self) -> None:
        """``docker pause``: freeze every process of the container (cgroup freezer)."""
        container = self._inspect()
        if container is not None and container.status == "running":
            container.pause()

    def resume(self) -> None:
        """``docker unpause``; a no-op when not paused."""
        container = self._inspect()
        if container is not None and container.status == "paused":
            container.unpause()

    # -- readiness and evidence ------------------------------------------------
    def is_ready(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_listener(self) -> None:
        """On the host network, the port must be held by the container's own processes (not an impostor's)."""
        if self.spec.network is None:
            check_listener(self._port, self.state().get("Pid") or None, self.name)

    def wait_ready(self, timeout: float) -> None:
        """Return once :meth:`is_ready`; :class:`ServiceError` with the container's state and logs after ``timeout`` s."""
        try:
            wait_until(self.is_ready, timeout, f"{self.name} becoming ready")
        except WaitTimeout as error:
            state = self.state()
            described = (
                f"container {self.spec.name} is {state.get('Status', 'missing')}"
                f" (exit code {state.get('ExitCode')}, restarted {state.get('RestartCount', 0)} times"
                f"{', error: ' + state['Error'] if state.get('Error') else ''})"
            )
            raise ServiceError(f"{error}; {described}; see `docker logs {self.spec.name}`", logs=self._tail()) from None

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def logs(self, since: float | None = None) -> str:
        """The container's output (all its restarts), each line stamped with its epoch second, from ``since`` on."""
        import docker.errors

        container = self._container
        if container is None:
            return ""
        try:
            raw = container.logs(
                stdout=True,
                stderr=True,
                timestamps=True,
                since=since if since else None,
                tail=20000 if since is None else "all",
            )
        except docker.errors.APIError:
            return ""  # removed already
        out = []
        for line in raw.decode("utf-8", "replace").splitlines(keepends=True):
            stamp, _, text = line.partition(" ")
            seconds = _parse_stamp(stamp)
            out.append(f"{seconds:.3f} {text}" if seconds is not None else line)
        return "".join(out)

    def close(self) -> None:
        """Stop the container gracefully (so a kept volume holds a clean shutdown) and remove it; idempotent."""
        import docker.errors

        self._closed = True
        container = self._inspect()
        if container is None:
            return
        try:
            if container.status in ("running", "paused", "restarting"):
                container.stop(timeout=5)
        except docker.errors.APIError:
            pass  # removal below kills whatever is left
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


class PostgresContainer(ContainerService):
    """PostgreSQL in a container; restart modes map to ``smart``/``fast``/``immediate`` shutdowns."""

    def __init__(
        self,
        client: DockerClient,
        spec: ContainerSpec,
        port: int,
        admin_password: str,
        container: Any = None,
        disk_path: Path | None = None,
    ) -> None:
        super().__init__(client, spec, port, container)
        self.password = admin_password
        #: the host side of the bounded disk (a tmpfs of ``pg_disk_mb`` MiB) bound in as the data volume; None: a
        #: named volume on the engine's own filesystem, which the disk-full fault refuses to fill
        self.disk_path = disk_path
        self.database = spec.environment.get("APP_DB", "postgres")

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A libpq DSN for this server, on 127.0.0.1."""
        return f"host={LOOPBACK} port={self._port} dbname={dbname} user={user} password={password or self.password}"

    def _shutdown_signal(self, mode: str) -> int | None:
        try:
            return _SHUTDOWN_SIGNALS[mode]
        except KeyError:
            raise ValueError(f"unknown restart mode {mode!r}; use one of: {', '.join(_SHUTDOWN_SIGNALS)}") from None

    def is_ready(self) -> bool:
        self._check_listener()
        return database_answers(self.dsn(self.database))


class ApiContainer(ContainerService):
    """The API under uvicorn in a container; ready when ``GET /health`` answers at all."""

    def __init__(
        self, client: DockerClient, spec: ContainerSpec, port: int, health_path: str = "/health", container: Any = None
    ) -> None:
        super().__init__(client, spec, port, container)
        self.url = f"http://{LOOPBACK}:{port}"
        self.health_url = self.url + health_path

    def is_ready(self) -> bool:
        # the API is up when it answers; whether its database is reachable is the health check's business
        self._check_listener()
        return http_answers(self.health_url)
