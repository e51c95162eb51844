"""The load generator's controller: start a worker process, watch it, stop it, get its history.

The worker (:mod:`support.load.worker`) runs in a process of its own so that the
suite's own work (behave, SQL, fault injection) cannot delay its schedule. This
module talks to it over three pipes: the spec goes in a JSON file, commands go
to its stdin (``stop``, ``watch <t>``), and its stdout carries one JSON object
per line (``{"ready": ...}``, progress about every 0.5 s, ``{"done": ...}``),
read by a thread so the latest progress is always at hand without polling files.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

from support import REPO_ROOT
from support.core.run_dirs import RUN_MARKER
from support.load.history import Request, from_csv

__all__ = ["LoadSpec", "LoadSpecError", "LoadError", "LoadRun", "start_load"]

_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class LoadSpecError(ValueError):
    """A load spec is malformed; the one-line message says which field and why."""


class LoadError(RuntimeError):
    """The load worker failed to start, crashed, or had to be killed; the message carries its log tail."""


@dataclass(frozen=True)
class LoadSpec:
    """What load to send, and for how long at most.

    ``model`` ``"open"`` launches ``rate`` requests per second on a fixed
    schedule whatever the answers; ``"closed"`` runs ``users`` concurrent users,
    each sending its next request when its last one ends (after ``think_time`` s).
    ``write_fraction`` (0..1) of requests create users, the rest read back users
    whose creation was acknowledged. ``request_timeout`` (s) bounds each request;
    ``max_duration`` (s) bounds the schedule (the worker then waits up to
    ``request_timeout`` for answers, writes its history and exits by itself).
    ``max_in_flight`` bounds open requests: past it a request is recorded as
    ``fail`` with error ``"client overloaded"``. ``run_id`` prefixes every key
    (lower-case letters, digits and dashes, since it goes into an email).
    ``progress_interval`` (s) is how often the worker reports. ``workload``
    describes the requests (:class:`support.stack.workload.Workload`). ``base_url``
    must be on loopback unless ``allow_remote`` is set.
    """

    base_url: str
    model: Literal["open", "closed"] = "open"
    rate: float = 50.0
    users: int = 10
    write_fraction: float = 0.5
    request_timeout: float = 5.0
    max_duration: float = 300.0
    max_in_flight: int = 1000
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    think_time: float = 0.0
    seed: int | None = None
    progress_interval: float = 0.5
    allow_remote: bool = False
    #: what a write and a read are (:class:`support.stack.workload.Workload` as a dict); empty = the reference API's
    workload: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- constructors -------------------------------------------------------
    @classmethod
    def open_rate(cls, base_url: str, rate: float, **options: Any) -> "LoadSpec":
        """An open-model load of ``rate`` requests per second."""
        return cls(base_url=base_url, model="open", rate=rate, **options)

    @classmethod
    def closed_users(cls, base_url: str, users: int, **options: Any) -> "LoadSpec":
        """A closed-model load of ``users`` concurrent users."""
        return cls(base_url=base_url, model="closed", users=users, **options)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoadSpec":
        """Build from a plain dict (e.g. parsed JSON); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LoadSpecError(f"load spec: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-able dict."""
        return asdict(self)

    def with_(self, **changes: Any) -> "LoadSpec":
        """A copy with some fields changed (and validated)."""
        return replace(self, **changes)

    # -- validation -----------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`LoadSpecError` naming the first bad field."""
        def bad(name: str, why: str) -> LoadSpecError:
            return LoadSpecError(f"load spec: {name}={getattr(self, name)!r} {why}")

        parts = urlsplit(self.base_url) if isinstance(self.base_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad("base_url", "must be an http(s) URL such as http://127.0.0.1:8000")
        if not self.allow_remote and parts.hostname not in _LOOPBACK_HOSTS:
            raise bad("base_url", "is not on loopback (127.0.0.1); set allow_remote=True to load another host")
        if self.model not in ("open", "closed"):
            raise bad("model", "must be 'open' or 'closed'")
        if not _finite(self.rate) or self.rate <= 0:
            raise bad("rate", "must be a number of requests per second > 0")
        if not isinstance(self.users, int) or isinstance(self.users, bool) or self.users < 1:
            raise bad("users", "must be an integer >= 1")
        if not _finite(self.write_fraction) or not 0 <= self.write_fraction <= 1:
            raise bad("write_fraction", "must be between 0 and 1")
        for name in ("request_timeout", "max_duration", "progress_interval"):
            if not _finite(getattr(self, name)) or getattr(self, name) <= 0:
                raise bad(name, "must be a number of seconds > 0")
        if not _finite(self.think_time) or self.think_time < 0:
            raise bad("think_time", "must be a number of seconds >= 0")
        if not isinstance(self.max_in_flight, int) or isinstance(self.max_in_flight, bool) or self.max_in_flight < 1:
            raise bad("max_in_flight", "must be an integer >= 1")
        if self.model == "closed" and self.users > self.max_in_flight:
            raise bad("users", f"exceeds max_in_flight={self.max_in_flight}")
        if not isinstance(self.run_id, str) or not _RUN_ID.match(self.run_id):
            raise bad("run_id", "must be 1-40 lower-case letters, digits or dashes, starting with a letter or digit")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise bad("seed", "must be an integer or None")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from /proc (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after its closing parenthesis are fixed
    after = stat[stat.rindex(")") + 2:].split()
    return (int(after[11]) + int(after[12])) / os.sysconf("SC_CLK_TCK")


class LoadRun:
    """A running load worker. Use :func:`start_load` to make one.

    ``progress`` is the latest progress line as a dict (``t`` elapsed s,
    ``sent``, ``ok``, ``errors``, ``rps``, ``in_flight``, ``lag_p99_ms``,
    ``cpu_s``). ``watch`` is the latest live recovery figures once :meth:`finish`
    asked for them (see :mod:`support.load.worker`). ``t0`` is the
    monotonic time the schedule started.
    """

    def __init__(self, spec: LoadSpec, workdir: Path, proc: subprocess.Popen, history_path: Path,
                 log_path: Path) -> None:
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
    def priority(self) -> str | None:
        """The worker's scheduling class, ``realtime`` or ``normal`` (see :mod:`support.load.worker`)."""
        return self._ready.get("priority") if self._ready else None

    @property
    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the worker has used so far, or in all once it finished."""
        if self._done and "cpu_s" in self._done:
            return float(self._done["cpu_s"])
        live = _proc_cpu_seconds(self.pid) if self.running else None
        if live is not None:
            self._last_cpu = live
        return self._last_cpu if self._last_cpu is not None else self.progress.get("cpu_s")

    @property
    def history(self) -> list[Request] | None:
        """The history once :meth:`stop` collected it, else None."""
        return self._history

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
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

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
            raise LoadError(f"load worker (pid {self.pid}) was not ready within {timeout:g} s;"
                            f" killed it. Its log:{self._log_tail()}")
        if self._ready is None:
            self._proc.wait(timeout=5)
            raise LoadError(f"load worker exited with code {self._proc.returncode} before it was ready."
                            f" Its log:{self._log_tail()}")

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
                self._error = LoadError(f"load worker (pid {self.pid}) did not stop within {timeout:g} s;"
                                        f" killed it, its history is lost. Its log:{self._log_tail()}")
                raise self._error from None
            self._reader.join(timeout=5)
            if self._proc.returncode != 0:
                self._error = LoadError(f"load worker exited with code {self._proc.returncode}."
                                        f" Its log:{self._log_tail()}")
                raise self._error
            try:
                history = from_csv(self.history_path.read_text())
            except (OSError, ValueError, KeyError) as error:
                self._error = LoadError(f"cannot read the load history {self.history_path}: {error}")
                raise self._error from error
            self._history = sorted(history, key=lambda r: r.start)
            return self._history

    def finish(self, after: float, settle: float = 0.0, min_successes: int = 5, min_span: float = 0.5, *,
               deadline: float) -> list[Request]:
        """Keep the load running until it shows recovery since ``after``, then stop it.

        Recovery is the rule of :func:`support.checks.checkers.recovery` applied live
        to the requests completed so far that started at or after monotonic
        ``after``: at least ``min_successes`` ok requests spanning at least
        ``min_span`` s with no non-ok request started after the first of them.
        Once the rule holds, the load runs ``settle`` s more (a failure in
        that time starts the wait again) so a relapse shows in the history.
        At monotonic ``deadline`` it stops whatever it saw. Returns
        :meth:`stop`'s history; judge it with the checkers, which also count
        the requests that were still in flight here.
        """
        if self._history is not None or self._error is not None:
            return self.stop()
        self._send(f"watch {after!r}")
        held_since: float | None = None  # when the rule began to hold with the current last failure
        held_bad: float | None = None

        def settled() -> bool:
            nonlocal held_since, held_bad
            if self._eof or self._done is not None:
                return True
            watch = self._watch
            if not watch or watch.get("after") != after:
                return False
            first, last = watch["first_ok"], watch["last_ok"]
            if watch["oks"] < min_successes or first is None or last - first < min_span:
                held_since = None
                return False
            oldest_open = watch.get("oldest_open")
            if oldest_open is not None and oldest_open <= last:
                return False  # a request launched inside the run is still open and may yet fail
            if held_since is None or watch["last_bad"] != held_bad:
                held_since, held_bad = time.monotonic(), watch["last_bad"]
            return time.monotonic() - held_since >= settle

        # the worker sends its live figures every 0.1 s once watched; each line wakes this wait to re-judge
        self._wait_for(settled, deadline)
        return self.stop()

    def __enter__(self) -> "LoadRun":
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
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            cwd=REPO_ROOT, env=env, start_new_session=True,
        )
    run = LoadRun(spec, workdir, proc, history_path, log_path)
    run._wait_ready(ready_timeout)
    return run
