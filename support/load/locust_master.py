"""The ``locust`` load engine's master: ``python -m support.load.locust_master spec.json``.

It speaks the native worker's protocol (:mod:`support.load.worker`: the spec file,
``stop`` and ``watch`` on stdin, ``ready``, progress, ``watch`` and ``done`` lines on
stdout, the history CSV at ``output``), so :class:`support.load.controller.LoadRun`
runs it unchanged; behind it, Locust's own master (``MasterRunner``) drives Locust
workers that run :mod:`support.load.locustfile`. Locust monkey-patches this process
with gevent: the suite's own process never imports Locust.

Start. The master listens on ``bind_host:bind_port``, starts ``local`` worker
processes (in its own process group, so a kill of the group takes them too) and
waits for ``local + remote`` workers. It then measures each worker's clock offset,
sends each its share of the spec (``chaos_spec``), waits until each has its login
token, spawns the Locust users, and sends the start time ``t0`` (``chaos_go``).

Clocks. Every time in the history is this machine's ``time.monotonic()``, the
clock of the suite's fault timeline. A worker whose kernel boot id is the master's
reads the same clock: its offset is 0 exactly. Another machine's worker is pinged
five times (``chaos_ping``: master time out, worker time back, master time on
arrival); the offset is the worker's time minus the midpoint of the exchange with
the shortest round trip, and its error is at most half that round trip (reported
as ``clock_error_ms``; over a LAN well under a millisecond, plus the two clocks'
drift over the run, tens of microseconds per second). Recovery times computed from
such a worker's requests carry that error.

Stop. On ``stop``, end of stdin, SIGTERM/SIGINT or ``max_duration``, each worker
stops launching, waits up to ``request_timeout`` + 1 s for its open requests and
sends its last records (``chaos_final``); a worker that sends none within
``request_timeout`` + 5 s makes the master exit with code 3 naming it, since its
history would be incomplete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.event import AsyncResult, Event
from gevent.socket import wait_read
from locust import events
from locust.env import Environment
from locust.log import setup_logging

from support import REPO_ROOT
from support.core.waiting import wait_until
from support.load.history import percentile
from support.load.locustfile import ChaosUser, boot_id
from support.load.os_resources import cpu_seconds_of, own_cpu_seconds
from support.load.protocol import Tally
from support.load.spec import LoadSpec, LoadSpecError

__all__ = ["Master", "main", "LOCUSTFILE", "open_users_per_worker"]

monotonic = time.monotonic
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
_WATCH_INTERVAL = 0.1
_PINGS = 5


def open_users_per_worker(spec: LoadSpec, workers: int) -> int:
    """Locust users per worker for the open model: enough to keep a slot's user free through a whole
    ``request_timeout`` of answers that never come, bounded by ``max_in_flight``."""
    per_worker = spec.rate / workers
    return max(2, min(int(per_worker * spec.request_timeout) + 10, max(1, spec.max_in_flight // workers)))


class Master:
    """One load run through Locust's master; see the module docstring."""

    def __init__(self, spec: LoadSpec, output: Path, locust: dict[str, Any]) -> None:
        self.spec = spec
        self.output = output
        self.local = int(locust["local"])
        self.expected = self.local + int(locust["remote"])
        self.bind_host, self.bind_port = str(locust["bind_host"]), int(locust["bind_port"])
        self.logs = Path(locust["log_dir"])
        self.stem = str(locust["stem"])
        self.env = Environment(user_classes=[ChaosUser], events=events, host=_origin(spec.base_url))
        self.runner = self.env.create_master_runner(self.bind_host, self.bind_port)
        self.procs: list[subprocess.Popen] = []
        self.hello: set[str] = set()  # workers whose hooks are registered (they said hello)
        self.index: dict[str, int] = {}  # client id -> the worker's share of the schedule, 0..W-1
        self.offsets: dict[int, float] = {}
        self.clock_errors: dict[int, float] = {}
        self.tally = Tally()  # the completed requests, their counts, the live watch
        self.sent: dict[int, int] = {}
        self.in_flight: dict[int, int] = {}
        self.oldest_open: dict[int, float | None] = {}
        self.tokens: dict[int, int] = {}
        self.finals: set[int] = set()
        self.window_lags: list[float] = []
        self.ready: dict[int, AsyncResult] = {}
        self.pongs: dict[tuple[str, int], AsyncResult] = {}
        self.stopping = Event()
        self.all_final = Event()
        self.t0 = 0.0
        self.final_cpu: float | None = None
        for name, listener in (
            ("chaos_hello", self._on_hello),
            ("chaos_pong", self._on_pong),
            ("chaos_ready", self._on_ready),
            ("chaos_rows", self._on_rows),
            ("chaos_final", self._on_final),
        ):
            self.runner.register_message(name, listener)

    # -- output -----------------------------------------------------------------------------
    def emit(self, message: dict[str, Any]) -> None:
        try:
            sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.stopping.set()  # nobody reads us any more: stop and keep the history

    # -- messages from the workers -------------------------------------------------------------
    def _on_hello(self, environment: Any, msg: Any, **_: Any) -> None:
        self.hello.add(msg.node_id)

    def _on_pong(self, environment: Any, msg: Any, **_: Any) -> None:
        result = self.pongs.get((msg.data["client"], msg.data["n"]))
        if result is not None:
            result.set((monotonic(), msg.data))

    def _on_ready(self, environment: Any, msg: Any, **_: Any) -> None:
        result = self.ready.get(int(msg.data["index"]))
        if result is not None:
            result.set(msg.data)

    def _on_rows(self, environment: Any, msg: Any, **_: Any) -> None:
        data = msg.data
        index = int(data["index"])
        offset = self.offsets.get(index, 0.0)
        for op, key, scheduled, start, end, status, error, outcome, body in data["rows"]:
            self.tally.add((op, key, scheduled - offset, start - offset, end - offset, status, error, outcome, body))
        self.window_lags.extend(data["lags"])
        self.sent[index] = int(data["sent"])
        self.in_flight[index] = int(data["in_flight"])
        oldest = data["oldest_open"]
        self.oldest_open[index] = None if oldest is None else oldest - offset
        self.tokens[index] = int(data["tokens"])

    def _on_final(self, environment: Any, msg: Any, **_: Any) -> None:
        self._on_rows(environment, msg)
        self.finals.add(int(msg.data["index"]))
        if len(self.finals) >= len(self.index):
            self.all_final.set()

    # -- start ----------------------------------------------------------------------------------
    def start_workers(self) -> None:
        """Start the local worker processes (``python -m locust -f support/load/locustfile.py --worker``)."""
        host = "127.0.0.1" if self.bind_host in ("*", "0.0.0.0", "") else self.bind_host
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        for n in range(self.local):
            argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker"]
            argv += ["--master-host", host, "--master-port", str(self.bind_port), "--loglevel", "WARNING"]
            with open(self.logs / f"{self.stem}-worker{n}.log", "wb") as log:
                self.procs.append(
                    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO_ROOT, env=env)
                )

    def wait_for_workers(self, timeout: float) -> None:
        def connected() -> bool:
            dead = [p.pid for p in self.procs if p.poll() is not None]
            if dead:
                raise SystemExit(f"loadgen: locust worker process {dead[0]} exited before it connected")
            return len(self.hello) >= self.expected

        wait_until(
            connected, timeout, f"{self.expected} Locust worker(s) connecting to {self.bind_host}:{self.bind_port}"
        )
        for k, client in enumerate(sorted(self.hello)[: self.expected]):
            self.index[client] = k

    def measure_clocks(self) -> None:
        """Each worker's clock offset to this one (0 on the same kernel) and its bound, in seconds."""
        mine = boot_id()
        for client, k in self.index.items():
            best: tuple[float, float] | None = None  # (round trip, offset)
            same = False
            for n in range(_PINGS):
                result: AsyncResult = AsyncResult()
                self.pongs[(client, n)] = result
                sent = monotonic()
                self.runner.send_message("chaos_ping", {"client": client, "n": n, "master": sent}, client_id=client)
                back, data = result.get(timeout=5.0)
                same = bool(mine) and data["boot_id"] == mine
                trip = back - sent
                offset = data["worker"] - (sent + back) / 2
                if best is None or trip < best[0]:
                    best = (trip, offset)
            assert best is not None
            self.offsets[k] = 0.0 if same else best[1]
            self.clock_errors[k] = 0.0 if same else best[0] / 2

    def send_plans(self) -> None:
        """Each worker's share of the spec, then wait for its login."""
        spec = self.spec.to_dict()
        for client, k in self.index.items():
            self.ready[k] = AsyncResult()
            data = {"spec": spec, "index": k, "count": len(self.index), "offset": self.offsets[k]}
            self.runner.send_message("chaos_spec", data, client_id=client)
        for result in self.ready.values():
            answer = result.get(timeout=self.spec.request_timeout + 5.0)
            if answer["error"]:
                raise _NoToken(answer["error"])

    def spawn(self, timeout: float) -> int:
        """Spawn the Locust users and wait until every worker runs its share; returns how many."""
        workers = len(self.index)
        if self.spec.model == "open":
            users = open_users_per_worker(self.spec, workers) * workers
        else:
            users = self.spec.users
        self.runner.start(users, spawn_rate=max(100.0, users * 20.0))
        wait_until(lambda: self.runner.spawning_completed, timeout, f"Locust spawning {users} users")
        return users

    def go(self, users: int) -> None:
        self.t0 = monotonic() + 0.05  # every worker has the message before its first slot is due
        for client in self.index:
            self.runner.send_message("chaos_go", {"t0": self.t0}, client_id=client)
        gevent.sleep(max(0.0, self.t0 - monotonic()))
        self.emit(
            {
                "ready": True,
                "t0": self.t0,
                "model": self.spec.model,
                "run_id": self.spec.run_id,
                "priority": "normal",
                "engine": "locust",
                "workers": len(self.index),
                "users": users,
                "worker_pids": [p.pid for p in self.procs],
                "clock_offsets_ms": {str(k): round(v * 1000, 3) for k, v in self.offsets.items()},
                "clock_error_ms": round(max(self.clock_errors.values(), default=0.0) * 1000, 3),
            }
        )

    # -- while it runs ------------------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """CPU seconds of this process and of the local workers (remote ones are not counted)."""
        return own_cpu_seconds() + sum(cpu_seconds_of(p.pid) or 0.0 for p in self.procs)

    def report(self) -> None:
        last = monotonic()
        while not self.stopping.wait(self.spec.progress_interval):
            now = monotonic()
            lags, self.window_lags = self.window_lags, []
            self.emit(
                {
                    "t": round(now - self.t0, 3),
                    "sent": sum(self.sent.values()),
                    **self.tally.progress(now - last),
                    "in_flight": sum(self.in_flight.values()),
                    "lag_p99_ms": round((percentile(lags, 99) or 0.0) * 1000.0, 3),
                    "cpu_s": round(self.cpu_seconds(), 3),
                    "engine": "locust",
                    "workers": self.runner.worker_count,
                }
            )
            last = now

    def report_watch(self) -> None:
        while not self.stopping.wait(_WATCH_INTERVAL):
            if self.tally.watch is not None:
                figures = self.tally.watch.figures()
                figures["oldest_open"] = min((t for t in self.oldest_open.values() if t is not None), default=None)
                self.emit({"watch": figures})

    def command(self, line: str) -> None:
        if self.tally.command(line):
            self.stopping.set()

    def read_commands(self, fd: int) -> None:
        buffer = b""
        while not self.stopping.is_set():
            wait_read(fd)
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self.command(line.decode("utf-8", "replace").strip() or "noop")
        self.stopping.set()

    # -- stop ----------------------------------------------------------------------------------------
    def finish(self) -> list[int]:
        """Stop every worker's load and collect its last records; the indexes of workers that sent none."""
        for client in self.index:
            self.runner.send_message("chaos_stop", None, client_id=client)
        self.all_final.wait(self.spec.request_timeout + 5.0)
        missing = sorted(set(self.index.values()) - self.finals)
        self.final_cpu = self.cpu_seconds()  # the local workers' CPU time is gone once they are reaped
        self.close()
        return missing

    def close(self) -> None:
        """Quit the Locust workers and reap the local ones (SIGKILL past 10 s)."""
        try:
            self.runner.quit()
        except Exception as error:  # noqa: BLE001 - quitting is best effort; the processes are reaped below
            print(f"loadgen: locust quit: {error}", file=sys.stderr)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class _NoToken(RuntimeError):
    """A worker could not get the workload's auth token."""


def _origin(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def run(master: Master, stdin_fd: int, ready_timeout: float) -> None:
    """Start the workers, run the load until it is stopped, collect it; raises SystemExit with a one-line reason."""
    deadline = monotonic() + ready_timeout
    master.start_workers()
    master.wait_for_workers(max(1.0, deadline - monotonic()))
    master.measure_clocks()
    master.send_plans()
    users = master.spawn(max(5.0, deadline - monotonic()))
    master.go(users)
    gevent.spawn(master.read_commands, stdin_fd)
    reporter, watcher = gevent.spawn(master.report), gevent.spawn(master.report_watch)
    master.stopping.wait(max(0.0, master.t0 + master.spec.max_duration - monotonic()))
    master.stopping.set()
    missing = master.finish()
    gevent.joinall([reporter, watcher], timeout=2.0)
    if missing:
        raise SystemExit(
            f"loadgen: locust worker(s) {', '.join(map(str, missing))} sent no final records within"
            f" {master.spec.request_timeout + 5:g} s: the history would be incomplete"
        )


def main(argv: list[str] | None = None) -> int:
    """Run one load through Locust from a spec file (the native worker's, with a ``locust`` table); 0 once the
    history is written."""
    argv = sys.argv[1:] if argv is None else argv
    setup_logging("WARNING")
    try:
        data = json.loads(Path(argv[0]).read_text())
        output = Path(data.pop("output"))
        locust = data.pop("locust")
        ready_timeout = float(locust.pop("ready_timeout", 60.0))
        spec = LoadSpec.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, IndexError, LoadSpecError) as error:
        print(f"loadgen: {error}", file=sys.stderr)
        return 2
    master = Master(spec, output, locust)
    stop = master.stopping.set
    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    try:
        run(master, sys.stdin.fileno(), ready_timeout)
    except _NoToken as error:
        master.close()
        print(f"loadgen: no auth token, so no load: {error}", file=sys.stderr)
        return 2
    except SystemExit as error:
        master.close()
        print(str(error.code), file=sys.stderr)
        return 3
    except (Exception, gevent.Timeout) as error:  # noqa: BLE001 - one line to the controller's log, then the workers go
        master.close()
        print(f"loadgen: locust engine failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 3
    master.emit(
        {
            **master.tally.finish(master.output),
            "cpu_s": round(master.final_cpu if master.final_cpu is not None else master.cpu_seconds(), 3),
            "sent": sum(master.sent.values()),
            "tokens": sum(master.tokens.values()),
            "engine": "locust",
            "workers": len(master.index),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
