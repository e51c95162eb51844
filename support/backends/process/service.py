"""What every process service shares: its supervised process, readiness wait, signals, logs and address.

:class:`ProcessService` is the base of :class:`~support.backends.process.postgres.PostgresProcess`
and :class:`~support.backends.process.backend.CommandProcess`; :func:`last_lines` puts the
last lines of a command's output in a one-line message.
"""

from __future__ import annotations

import signal

from support.backends.process.logs import read_stamped_log
from support.backends.process.supervisor import SupervisedProcess
from support.core.ports import LOOPBACK
from support.core.process_tree import descendants
from support.core.waiting import WaitTimeout, wait_until
from support.stack.services import Address, ServiceError

__all__ = ["ProcessService", "last_lines"]


class ProcessService:
    """What the two process services share: supervision, readiness, logs."""

    name: str

    def __init__(self, name: str, port: int, process: SupervisedProcess) -> None:
        self.name = name
        self._port = port
        self._process = process

    @property
    def address(self) -> Address:
        return Address(LOOPBACK, self._port)

    @property
    def pid(self) -> int | None:
        """PID of the running process (its process group id), or None when down."""
        return self._process.pid

    @property
    def restarts(self) -> int:
        """How many times the restart policy brought the service back."""
        return self._process.restarts

    def pids(self) -> list[int]:
        """PIDs of every live process of the service (its child first, then the processes below it); [] when down."""
        pid = self._process.pid
        return [] if pid is None else [pid, *descendants(pid)]

    def start(self, timeout: float = 30.0) -> None:
        self._process.start()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._process.stop(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self._process.kill(sig)

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        self._process.stop(timeout, self._stop_signal(mode))
        self.start(timeout)

    def _stop_signal(self, mode: str) -> int | None:
        return None

    def pause(self) -> None:
        self._process.pause()

    def resume(self) -> None:
        self._process.resume()

    def is_ready(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_until(self.is_ready, timeout, f"{self.name} becoming ready")
        except WaitTimeout as error:
            lines = self.logs().splitlines()[-30:]
            fatal = [line.split(" ", 1)[-1] for line in lines if "FATAL" in line or "Error" in line]
            state = "running" if self._process.running else "not running"
            said = f"; it said: {fatal[-1].strip()}" if fatal else ""
            # a process that is gone (it exited at once) is reported with its own last lines: the run's
            # directory, and the log in it, may be deleted once the run ends
            tail = "" if self._process.running else last_lines("\n".join(line.split(" ", 1)[-1] for line in lines), 3)
            raise ServiceError(
                f"{error}; the process is {state}{said}; see its log {self._process.spec.log_path}{tail}",
                logs="\n".join(lines),
            ) from None

    def logs(self, since: float | None = None) -> str:
        return read_stamped_log(self._process.spec.log_path, since)

    def close(self) -> None:
        self._process.close()


def last_lines(output: str, lines: int = 5) -> str:
    """The last ``lines`` non-empty lines of a command's output, on one line."""
    tail = [line.strip() for line in output.splitlines() if line.strip()][-lines:]
    return f"; its last lines: {' | '.join(tail)}" if tail else "; it printed nothing"
