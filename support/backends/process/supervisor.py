"""A child process group kept alive with a restart policy like Docker's ``unless-stopped``.

The suite is the parent of every process it starts and reaps them itself: a
dead PostgreSQL postmaster that nobody reaps holds ``postmaster.pid`` and makes
the next start fail for seconds, so one thread per service waits on its child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.core.process_tree import descendants

__all__ = ["SupervisedProcess", "ProcessSpec"]


@dataclass
class ProcessSpec:
    """How to run one service as a child process."""

    argv: Sequence[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    #: the signal that asks for a graceful stop (PostgreSQL: SIGINT = fast shutdown)
    stop_signal: int = signal.SIGTERM
    popen_kwargs: dict = field(default_factory=dict)


class SupervisedProcess:
    """One child process (and the processes it forks) with an ``unless-stopped`` restart policy.

    After an unexpected exit (a kill, a crash) it is started again after a
    back-off that starts at 0.1 s and doubles up to 2 s, reset once a run has
    lasted 10 s; after :meth:`stop` it stays down until :meth:`start`.
    """

    def __init__(self, name: str, spec: ProcessSpec, on_restart: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.spec = spec
        self._lock = threading.RLock()
        self._exited = threading.Condition(self._lock)
        self._proc: subprocess.Popen | None = None
        self._wanted = False
        self._paused = False
        self._backoff = 0.1
        self._generation = 0
        self.restarts = 0
        self._on_restart = on_restart
        self._closed = False

    # -- state -------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """PID of the running child (also its process group id), or None."""
        with self._lock:
            return self._proc.pid if self._proc and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def paused(self) -> bool:
        return self._paused

    # -- control -------------------------------------------------------------
    def start(self) -> None:
        """Start the child if it is not running, and keep it running from now on."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            self._wanted = True
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()

    def stop(self, timeout: float, sig: int | None = None) -> None:
        """Ask the child to stop (``sig``, default the spec's stop signal); SIGKILL after ``timeout`` s."""
        with self._lock:
            self._wanted = False
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            self._signal_group(proc, sig or self.spec.stop_signal, leader_only=True)
            if self._paused:
                self._signal_group(proc, signal.SIGCONT)
                self._paused = False
        if not self._wait_exit(proc, timeout):
            self._signal_group(proc, signal.SIGKILL)
            self._wait_exit(proc, 5.0)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the child and every process below it at once; the restart policy then applies."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            self._signal_group(proc, sig)
            if sig == signal.SIGKILL:
                self._paused = False

    def pause(self) -> None:
        """SIGSTOP the child and every process below it."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._signal_group(self._proc, signal.SIGSTOP)
                self._paused = True

    def resume(self) -> None:
        """SIGCONT every process paused by :meth:`pause`; a no-op when not paused."""
        with self._lock:
            if self._proc is not None and self._paused:
                self._signal_group(self._proc, signal.SIGCONT)
            self._paused = False

    def wait_exit(self, timeout: float) -> bool:
        """True once the current child has exited, False if still running after ``timeout`` s."""
        with self._lock:
            proc = self._proc
        return proc is None or self._wait_exit(proc, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop for good; the child and its whole group are gone when this returns."""
        self.stop(timeout)
        with self._lock:
            self._closed = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal_group(proc, signal.SIGKILL)

    # -- internals -------------------------------------------------------------
    def _spawn(self) -> None:
        spec = self.spec
        log = open(spec.log_path, "ab", buffering=0)
        try:
            proc = subprocess.Popen(
                list(spec.argv),
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **spec.popen_kwargs,
            )
        except BaseException:
            log.close()
            raise
        self._proc = proc
        self._paused = False
        self._generation += 1
        started = time.monotonic()
        threading.Thread(target=self._pump, args=(proc, log), name=f"{self.name}-log", daemon=True).start()
        threading.Thread(target=self._watch, args=(proc, started), name=f"{self.name}-watch", daemon=True).start()

    @staticmethod
    def _pump(proc: subprocess.Popen, log) -> None:
        # each line gets a wall-clock stamp so logs can be cut around a fault window
        out = proc.stdout
        assert out is not None  # started with stdout=PIPE
        with log:
            for line in iter(out.readline, b""):
                log.write(b"%.3f " % time.time() + line)
            out.close()

    def _watch(self, proc: subprocess.Popen, started: float) -> None:
        proc.wait()
        with self._lock:
            self._exited.notify_all()
            if self._proc is not proc or not self._wanted or self._closed:
                return
            lived = time.monotonic() - started
            self._backoff = 0.1 if lived > 10 else min(self._backoff * 2, 2.0)
            delay = 0.1 if lived > 10 else self._backoff
        with open(self.spec.log_path, "ab") as log:
            log.write(
                b"%.3f [supervisor] %s exited with %d; restarting in %.1f s\n"
                % (time.time(), self.name.encode(), proc.returncode, delay)
            )
        # the delay is the restart policy's back-off, not a synchronisation
        with self._lock:
            self._exited.wait_for(lambda: not (self._wanted and self._proc is proc), delay)
            if self._wanted and self._proc is proc and not self._closed:
                self.restarts += 1
                self._spawn()
        if self._on_restart:
            self._on_restart(self.name)

    def _wait_exit(self, proc: subprocess.Popen, timeout: float) -> bool:
        # woken by the child's watcher thread, which notifies once it has reaped the child
        with self._lock:
            return self._exited.wait_for(lambda: proc.poll() is not None, timeout)

    @staticmethod
    def _signal_group(proc: subprocess.Popen, sig: int, leader_only: bool = False) -> None:
        """Signal the child, and unless ``leader_only`` every process below it.

        PostgreSQL backends call setsid(), so a process-group signal would
        reach the postmaster alone: the tree is walked instead. It is read
        before any signal is sent; a stop freezes the leader first (it cannot
        fork more), a resume thaws the children first (nobody wakes up to a
        frozen parent).
        """
        tree = [proc.pid] if leader_only else [proc.pid, *descendants(proc.pid)]
        if sig == signal.SIGCONT:
            tree.reverse()
        for pid in tree:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
