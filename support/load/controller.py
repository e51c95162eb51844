"""The load generator's controller: start a worker process, watch it, stop it, get its history.

The worker (:mod:`support.load.worker`) runs in a process of its own so that the
suite's own work (behave, SQL, fault injection) cannot delay its schedule. This
module talks to it over three pipes: the spec goes in a JSON file, commands go
to its stdin (``stop``, ``watch <t> <min_successes> <min_span>``), and its stdout carries one JSON object
per line (``{"ready": ...}``, progress about every 0.5 s, ``{"done": ...}``),
read by a thread so the latest progress is always at hand without polling files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import REPO_ROOT
from support.core.run_dirs import RUN_MARKER
from support.load.history import Request, from_csv
from support.load.os_resources import cpu_seconds_of
from support.load.recovery import MIN_SPAN, MIN_SUCCESSES
from support.load.spec import LoadSpec

__all__ = ["LoadError", "LoadRun", "start_load"]


class LoadError(RuntimeError):
    """The load worker failed to start, crashed, or had to be killed; the message carries its log tail."""


class LoadRun:
    """A running load worker. Use :func:`start_load` to make one.

    ``progress`` is the latest progress line as a dict (``t`` elapsed s,
    ``sent``, ``ok``, ``errors``, ``rps``, ``in_flight``, ``lag_p99_ms``,
    ``cpu_s``). ``watch`` is the latest live recovery figures once :meth:`finish`
    asked for them (see :mod:`support.load.worker`). ``t0`` is the
    monotonic time the schedule started.
    """

    def __init__(
        self, spec: LoadSpec, workdir: Path, proc: subprocess.Popen, history_path: Path, log_path: Path
    ) -> None:
        self.spec = spec
        self.workdir = workdir
        self.history_path = history_path
        self.log_path = log_path
        self._proc = proc
        self._cond = threading.Condition()
        self._progress: dict[str, Any] = {}
        self._watch: dict[str, Any] | None = None
        self._ready: dict[str, Any] | None = None
        self._done: dict[str, Any] | None = None
        self._eof = False
        self._other_lines: deque[str] = deque(maxlen=20)
        self._stop_lock = threading.Lock()
        self._history: list[Request] | None = None
        self._error: LoadError | None = None
        self._last_cpu: float | None = None
        self._reader = threading.Thread(target=self._read_stdout, name=f"load-{spec.run_id}", daemon=True)
        self._reader.start()

    # -- state ----------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        """True while the worker process is alive."""
        return self._proc.poll() is None

    @property
    def progress(self) -> dict[str, Any]:
        """The latest progress line (a copy); empty before the first one."""
        with self._cond:
            return dict(self._progress)

    @property
    def watch(self) -> dict[str, Any] | None:
        """The latest live recovery figures (after :meth:`finish` started watching), or None."""
        with self._cond:
            return dict(self._watch) if self._watch else None

    @property
    def t0(self) -> float | None:
        """Monotonic seconds at which the worker's schedule started."""
        return self._ready.get("t0") if self._ready else None

    @property
    def started(self) -> dict[str, Any]:
        """The worker's ``ready`` line (a copy; empty before it): with the locust engine also ``engine``,
        ``workers``, ``users``, ``worker_pids``, ``clock_offsets_ms`` and ``clock_error_ms``."""
        return dict(self._ready) if self._ready else {}

    @property
    def priority(self) -> str | None:
        """The worker's scheduling class, ``realtime`` or ``normal`` (see :mod:`support.load.worker`)."""
        return self._ready.get("priority") if self._ready else None

    @property
    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the worker has used so far, or in all once it finished."""
        if self._done and "cpu_s" in self._done:
            return float(self._done["cpu_s"])
        live = cpu_seconds_of(self.pid) if self.running else None
        if live is not None:
            self._last_cpu = live
        return self._last_cpu if self._last_cpu is not None else self.progress.get("cpu_s")

    @property
    def history(self) -> list[Request] | None:
        """The history once :meth:`stop` collected it, else None."""
        return self._history

    @property
    def summary(self) -> dict[str, Any] | None:
        """The worker's last line once it finished (``requests``, ``sent``, ``ok``, ``fail``, ``info``,
        ``tokens`` fetched, ``cpu_s``), else None."""
        with self._cond:
            return dict(self._done) if self._done else None

    # -- the stdout reader -------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            with self._cond:
                if not isinstance(message, dict):
                    self._other_lines.append(line)
                elif message.get("ready"):
                    self._ready = message
                elif message.get("done"):
                    self._done = message
                elif "watch" in message and len(message) == 1:
                    self._watch = message["watch"]
                else:
                    self._progress = message
                    if "cpu_s" in message:
                        self._last_cpu = float(message["cpu_s"])
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _wait_for(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Wait on the reader's notifications until ``predicate()`` or monotonic ``deadline``."""
        with self._cond:
            return self._cond.wait_for(predicate, max(0.0, deadline - time.monotonic()))

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            text = []
        text = list(self._other_lines) + text
        return ("\n  " + "\n  ".join(text)) if text else " (the worker wrote nothing)"

    def _send(self, command: str) -> None:
        """Write one command line to the worker; a closed pipe means it is already finishing."""
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(command.encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    # -- control -------------------------------------------------------------
    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self._wait_for(lambda: self._ready is not None or self._eof, deadline):
            self._kill()
            raise LoadError(
                f"load worker (pid {self.pid}) was not ready within {timeout:g} s;"
                f" killed it. Its log:{self._log_tail()}"
            )
        if self._ready is None:
            self._proc.wait(timeout=5)
            raise LoadError(
                f"load worker exited with code {self._proc.returncode} before it was ready. Its log:{self._log_tail()}"
            )

    def _kill(self) -> None:
        """SIGKILL the worker's process group (its own, led by its PID) and reap it."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait(timeout=10)

    def stop(self, timeout: float | None = None) -> list[Request]:
        """Stop the load and return its history (sorted by start); idempotent.

        The worker stops launching, waits up to ``request_timeout`` for the
        requests in flight, writes its history and exits. If it has not exited
        within ``timeout`` seconds (default ``request_timeout + 10``) it is
        killed and :class:`LoadError` is raised, since its history is lost.
        """
        with self._stop_lock:
            if self._history is not None:
                return self._history
            if self._error is not None:
                raise self._error
            timeout = self.spec.request_timeout + 10 if timeout is None else timeout
            self._send("stop")
            if self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                self._error = LoadError(
                    f"load worker (pid {self.pid}) did not stop within {timeout:g} s;"
                    f" killed it, its history is lost. Its log:{self._log_tail()}"
                )
                raise self._error from None
            self._reader.join(timeout=5)
            if self._proc.returncode != 0:
                self._error = LoadError(
                    f"load worker exited with code {self._proc.returncode}. Its log:{self._log_tail()}"
                )
                raise self._error
            try:
                history = from_csv(self.history_path.read_text())
            except (OSError, ValueError, KeyError) as error:
                self._error = LoadError(f"cannot read the load history {self.history_path}: {error}")
                raise self._error from error
            self._history = sorted(history, key=lambda r: r.start)
            return self._history

    def finish(
        self,
        after: float,
        settle: float = 0.0,
        min_successes: int = MIN_SUCCESSES,
        min_span: float = MIN_SPAN,
        *,
        deadline: float,
    ) -> list[Request]:
        """Keep the load running until it shows recovery since ``after``, then stop it.

        The worker applies the recovery rule (:class:`support.load.recovery.RecoveryRule`,
        with ``min_successes`` and ``min_span`` s) live to the requests completed so
        far, from monotonic ``after``, and reports whether it holds. Once it holds
        and no request launched inside the run is still open, the load runs
        ``settle`` s more (a failure in that time starts the wait again) so a
        relapse shows in the history. At monotonic ``deadline`` it stops whatever
        it saw. Returns :meth:`stop`'s history; judge it with the checkers, which
        also count the requests that were still in flight here.
        """
        if self._history is not None or self._error is not None:
            return self.stop()
        self._send(f"watch {after!r} {min_successes:d} {min_span!r}")
        held_since: float | None = None  # when the rule began to hold with the current last failure
        held_bad: float | None = None

        def settled() -> bool:
            nonlocal held_since, held_bad
            if self._eof or self._done is not None:
                return True
            watch = self._watch
            if not watch or watch.get("after") != after:
                return False
            if not watch["recovered"]:
                held_since = None
                return False
            oldest_open = watch.get("oldest_open")
            if oldest_open is not None and oldest_open <= watch["last_ok"]:
                return False  # a request launched inside the run is still open and may yet fail
            if held_since is None or watch["last_bad"] != held_bad:
                held_since, held_bad = time.monotonic(), watch["last_bad"]
            return time.monotonic() - held_since >= settle

        # the worker sends its live figures every 0.1 s once watched; each line wakes this wait to re-judge
        self._wait_for(settled, deadline)
        return self.stop()

    def __enter__(self) -> LoadRun:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        except LoadError:
            if exc[0] is None:
                raise


def start_load(spec: LoadSpec, workdir: Path, ready_timeout: float = 20.0) -> LoadRun:
    """Start a load worker for ``spec`` and return once its schedule has started.

    The spec goes to ``workdir/load-<run_id>.json``, the worker's stderr to
    ``load-<run_id>.log`` and its history to ``load-<run_id>.csv``. The worker
    runs in its own process group; :class:`LoadError` if it is not ready
    within ``ready_timeout`` seconds.
    """
    spec.validate()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"load-{spec.run_id}"
    spec_path, log_path, history_path = (workdir / f"{stem}{ext}" for ext in (".json", ".log", ".csv"))
    history_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({**spec.to_dict(), "output": str(history_path)}, indent=2))
    env = dict(os.environ)
    env[RUN_MARKER] = str(workdir)  # a later run finds and kills a worker that a killed run left
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "support.load.worker", str(spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )
    run = LoadRun(spec, workdir, proc, history_path, log_path)
    run._wait_ready(ready_timeout)
    return run
