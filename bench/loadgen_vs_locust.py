"""The suite's load generator against Locust, aiohttp and httpx: throughput, CPU cost, latency, schedule lag.

    python bench/loadgen_vs_locust.py [--quick] [--seconds 8] [--rate R] [--users 10] [--only users|hello]

Needs ``pip install -r bench/requirements.txt`` (Locust). Starts the suite's
stack (process backend, under /tmp/chaos-suite-bench) and a tiny aiohttp
"hello" server that does no work, both on 127.0.0.1. Against each target it
runs, one after the other and in a rotating order so drift hits all alike:

- ``suite``: the suite's own worker (``support.load.worker`` through
  ``support.load.controller.start_load``) on its own protocol-level client
  (``support.load.client``) in its own process, real-time scheduled in the
  open model where allowed (as in the suite);
- ``locust``: Locust ``FastHttpUser`` headless (``python -m locust --headless
  -u N -r N -t Ts --csv``, ``bench/locustfile.py``);
- ``aiohttp`` and ``httpx``: ``aiohttp.ClientSession`` and ``httpx.AsyncClient``
  in a worker written like the suite's (this file with ``--client-worker``), so
  the choice of client stays justified by numbers.

Two workloads per target: ``open R/s`` (the suite, aiohttp and httpx launch requests on a
fixed schedule; Locust runs N users at ``constant_throughput(R/N)``) with R the
suite's ``heavy`` level from behave.ini, and ``closed N`` (N users, each sending
its next request when the last one ends, no wait). The ``users`` target mixes
writes (``POST /users``) and content-checked reads of acknowledged writes
(``GET /users/{id}``) as the suite does; ``hello`` reads ``GET /hello/1``.

``--busy N`` keeps N CPU-burning processes running throughout, as on a busy
shared machine: the schedule lag then shows what the suite's real-time
scheduling class is worth (the other generators and the control run in the
normal class).

Every generator runs in its own process; after a warm-up its CPU time (user +
system, /proc/<pid>/stat) is read at both edges of a measured window and the
requests that ended in the window are counted. ``--rounds`` repeats every run
(generators in a rotated order) and sums the rounds. While the suite's worker
runs the open model, a control process keeps the same schedule with a bare
``loop.call_at`` timer and no requests (``(timer)`` rows): its lag is what this
machine's scheduler alone costs, so the worker's own share of the lag shows. Printed last: requests/s,
requests per CPU-second of the generator, p50/p99 latency, p99 schedule lag
(start minus scheduled time, open model only), errors, then the ratios
suite/Locust, suite/aiohttp and suite/httpx and the issue's goals.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from bench.common import ROOT, bench_settings, cpu_seconds, machine, ms, pause_until, percentile, table  # noqa: E402
from support.core.ports import LOOPBACK, free_port  # noqa: E402
from support.core.waiting import wait_until  # noqa: E402
from support.load.controller import start_load  # noqa: E402
from support.load.spec import LoadSpec  # noqa: E402
from support.load.worker import TIMER_RESOLUTION  # noqa: E402
from support.stack.workload import Workload  # noqa: E402

GENERATORS = ("suite", "locust", "aiohttp", "httpx")
#: the hello server's workload for the suite's worker: every read is GET /hello/{id}, nothing compared
HELLO_WORKLOAD = Workload(create_path="/hello", create_body={"email": "{key}"}, read_path="/hello/{id}", compare=())
LAG_GOAL = 0.005  # s, p99 schedule lag of the open model at the heavy level
CPU_RATIO_GOAL = 1.0  # suite / Locust requests per CPU-second


# -- measuring ----------------------------------------------------------------------------


@dataclass
class Window:
    """The measured window: warm-up, then ``seconds`` of measurement."""

    warmup: float
    seconds: float


@dataclass
class Measured:
    """What one generator did in the measured window (times in seconds)."""

    target: str
    workload: str
    generator: str
    seconds: float
    cpu: float
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float | None:
        return self.requests / self.cpu if self.cpu > 0 else None

    def add(self, other: Measured) -> None:
        """Fold another round of the same run into this one."""
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.requests += other.requests
        self.errors += other.errors
        self.latencies += other.latencies
        self.lags += other.lags

    def row(self) -> list[str]:
        if self.generator == "timer":  # the control: only its lag means anything
            return [
                self.target,
                self.workload,
                "(timer)",
                "-",
                "-",
                "-",
                "-",
                "-",
                ms(percentile(self.lags, 99), 2),
                "-",
            ]
        per_cpu = self.per_cpu_second
        return [
            self.target,
            self.workload,
            self.generator,
            f"{self.per_second:,.0f}",
            "-" if per_cpu is None else f"{per_cpu:,.0f}",
            f"{self.cpu / self.seconds:.0%}",
            ms(percentile(self.latencies, 50), 2),
            ms(percentile(self.latencies, 99), 2),
            ms(percentile(self.lags, 99), 2) if self.lags else "-",
            str(self.errors),
        ]


def summarize(
    target: str,
    workload: str,
    generator: str,
    records: list[tuple[float | None, float, float, bool]],
    start: float,
    end: float,
    cpu: float,
) -> Measured:
    """The requests (scheduled or None, start, end, ok) that ended in [start, end), and ``cpu`` s spent."""
    out = Measured(target, workload, generator, end - start, cpu)
    for scheduled, began, ended, ok in records:
        if start <= ended < end:
            out.requests += 1
            out.errors += not ok
            out.latencies.append(ended - began)
            if scheduled is not None:
                out.lags.append(began - scheduled)
    return out


def measure_cpu(pid: int, ready: float, window: Window) -> tuple[float, float, float]:
    """(window start, window end, CPU seconds of ``pid`` in between), the window starting ``warmup`` after ``ready``."""
    start = ready + window.warmup
    pause_until(start)
    start, cpu_start = time.monotonic(), cpu_seconds(pid)
    pause_until(start + window.seconds)
    end, cpu_end = time.monotonic(), cpu_seconds(pid)
    return start, end, cpu_end - cpu_start


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s; reaped either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float, what: str) -> float:
    """The monotonic time written in ``path`` once it appears; fails if ``proc`` exits first."""

    def appeared() -> float | None:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode} before it was ready")
        text = path.read_text() if path.exists() else ""
        return float(text) if text.strip() else None

    try:
        return wait_until(appeared, timeout, f"{what} becoming ready")
    except BaseException:
        stop_process(proc, 5)
        raise


# -- the three generators ------------------------------------------------------------------------


@dataclass
class Job:
    """One run: a generator against a target with a workload."""

    target: str  # "users" or "hello"
    url: str
    model: str  # "open" or "closed"
    rate: float
    users: int
    write_fraction: float

    @property
    def workload(self) -> str:
        return f"open {self.rate:g}/s" if self.model == "open" else f"closed {self.users}"


def run_suite(job: Job, window: Window, work: Path) -> list[Measured]:
    """The suite's own worker, started and stopped as a scenario does; with the open model, the timer control
    runs in the same window."""
    options: dict[str, Any] = {
        "write_fraction": job.write_fraction,
        "run_id": f"suite-{secrets.token_hex(3)}",
        "max_duration": window.warmup + window.seconds + 30,
    }
    if job.target == "hello":
        options["workload"] = HELLO_WORKLOAD.to_dict()
    spec = (
        LoadSpec.open_rate(job.url, job.rate, **options)
        if job.model == "open"
        else LoadSpec.closed_users(job.url, job.users, **options)
    )
    control = start_timer_control(job.rate, window.warmup + window.seconds + 30, work) if job.model == "open" else None
    try:
        load = start_load(spec, work)
        try:
            assert load.t0 is not None
            start, end, cpu = measure_cpu(load.pid, load.t0, window)
        finally:
            history = load.stop()
    finally:
        timer = control.stop() if control else []
    records = [(r.scheduled if job.model == "open" else None, r.start, r.end, r.outcome == "ok") for r in history]
    measured = [summarize(job.target, job.workload, "suite", records, start, end, cpu)]
    if control:
        measured.append(summarize(job.target, job.workload, "timer", timer, start, end, 0.0))
    return measured


def run_locust(job: Job, window: Window, work: Path) -> list[Measured]:
    """Locust FastHttpUser, headless, in its own process."""
    ready, records_path = work / "locust-ready", work / "locust-records.json"
    for path in (ready, records_path):
        path.unlink(missing_ok=True)
    env = dict(
        os.environ,
        BENCH_TARGET=job.target,
        BENCH_WRITE_FRACTION=str(job.write_fraction),
        BENCH_RATE_PER_USER=str(job.rate / job.users if job.model == "open" else 0),
        BENCH_RUN_ID=f"locust-{secrets.token_hex(3)}",
        BENCH_READY=str(ready),
        BENCH_RECORDS=str(records_path),
    )
    # spawning N users at N per second takes about a second; -t is a backstop, the window ends first
    run_time = int(window.warmup + window.seconds + 15)
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "bench" / "locustfile.py"),
        "--headless",
        "-u",
        str(job.users),
        "-r",
        str(job.users),
        "-t",
        f"{run_time}s",
        "--host",
        job.url,
        "--csv",
        str(work / "locust"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    with open(work / "locust.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t_ready = wait_for_file(ready, proc, 60, "locust")
        start, end, cpu = measure_cpu(proc.pid, t_ready, window)
    finally:
        stop_process(proc, 20)
    if not records_path.exists():
        raise SystemExit(f"locust wrote no records; its log: {work / 'locust.log'}")
    records = [(None, s, e, ok) for s, e, ok in json.loads(records_path.read_text())]
    return [summarize(job.target, job.workload, "locust", records, start, end, cpu)]


def run_client_worker(kind: str, job: Job, window: Window, work: Path) -> list[Measured]:
    """This file's worker on the ``kind`` client library (httpx or aiohttp) in its own process."""
    ready, output = work / f"{kind}-ready", work / f"{kind}-records.json"
    for path in (ready, output):
        path.unlink(missing_ok=True)
    spec = {
        "client": kind,
        "url": job.url,
        "target": job.target,
        "model": job.model,
        "rate": job.rate,
        "users": job.users,
        "write_fraction": job.write_fraction,
        "run_id": f"{kind}-{secrets.token_hex(3)}",
        "max_duration": window.warmup + window.seconds + 30,
        "ready": str(ready),
        "output": str(output),
    }
    spec_path = work / f"{kind}-spec.json"
    spec_path.write_text(json.dumps(spec))
    with open(work / f"{kind}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--client-worker", str(spec_path)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        t_ready = wait_for_file(ready, proc, 30, f"the {kind} worker")
        start, end, cpu = measure_cpu(proc.pid, t_ready, window)
    finally:
        stop_process(proc, 20)
    if not output.exists():
        raise SystemExit(f"the {kind} worker wrote no records; its log: {work / f'{kind}.log'}")
    records = [tuple(r) for r in json.loads(output.read_text())]
    return [summarize(job.target, job.workload, kind, records, start, end, cpu)]  # type: ignore[arg-type]


RUNNERS = {
    "suite": run_suite,
    "locust": run_locust,
    "aiohttp": lambda job, window, work: run_client_worker("aiohttp", job, window, work),
    "httpx": lambda job, window, work: run_client_worker("httpx", job, window, work),
}


# -- the client-library worker (a separate process) -------------------------------------------------


class ClientWorker:
    """The suite's worker's schedule and bookkeeping on a client library: ``httpx.AsyncClient`` or
    ``aiohttp.ClientSession`` (what the suite's worker used before its own client)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.rng = random.Random()
        self.seq = count()
        self.acked: list[tuple[int, str, str]] = []
        self.records: list[tuple[float | None, float, float, bool]] = []
        self.tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()
        self.client: Any = None
        self.t0 = 0.0
        self._next = 0
        self._timer: asyncio.TimerHandle | None = None

    async def request(self, scheduled: float | None) -> None:
        start = time.monotonic()
        assert self.client is not None
        run_id = self.spec["run_id"]
        expected: tuple[str, str] | None = None
        if self.spec["target"] == "hello":
            method, path, payload, op = "GET", "/hello/1", None, "hello"
        elif not self.acked or self.rng.random() < self.spec["write_fraction"]:
            seq = next(self.seq)
            payload = {"name": f"user-{run_id}-{seq}", "email": f"{run_id}-{seq}@load.test"}
            method, path, op = "POST", "/users", "write"
        else:
            ident, name, email = self.rng.choice(self.acked)
            method, path, payload, op, expected = "GET", f"/users/{ident}", None, "read", (name, email)
        ok = False
        try:
            status, content = await self.send(method, path, payload)
            row = json.loads(content) if status < 300 else None
            if op == "write":
                ok = status == 201 and isinstance(row, dict)
                if ok:
                    self.acked.append((row["id"], payload["name"], payload["email"]))  # type: ignore[index]
            elif op == "read":
                ok = isinstance(row, dict) and (row.get("name"), row.get("email")) == expected
            else:
                ok = isinstance(row, dict)
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError, ValueError):
            ok = False
        self.records.append((scheduled, start, time.monotonic(), ok))

    async def send(self, method: str, path: str, payload: Any) -> tuple[int, bytes]:
        if self.spec["client"] == "httpx":
            response = await self.client.request(method, path, json=payload)
            return response.status_code, response.content
        async with self.client.request(method, self.spec["url"] + path, json=payload) as response:
            return response.status, await response.read()

    def launch(self, scheduled: float) -> None:
        task = asyncio.get_running_loop().create_task(self.request(scheduled))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _tick(self) -> None:
        """Launch every request due by now, then arm the timer for the next one (as the suite's worker,
        with its rule for a request due within the timer resolution)."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while not self.stopping.is_set():
            scheduled = self.t0 + self._next / self.spec["rate"]
            if scheduled > now + TIMER_RESOLUTION:
                self._timer = loop.call_at(scheduled, self._tick)
                return
            self._next += 1
            self.launch(scheduled)
            now = time.monotonic()

    async def user(self) -> None:
        while not self.stopping.is_set():
            await self.request(None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        limit = max(self.spec["users"], 1000)
        if self.spec["client"] == "httpx":
            limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=30)
            session: Any = httpx.AsyncClient(base_url=self.spec["url"], limits=limits, timeout=5.0)
        else:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=5.0),
            )
        async with session as client:
            self.client = client
            self.t0 = time.monotonic()
            Path(self.spec["ready"]).write_text(repr(self.t0))
            if self.spec["model"] == "open":
                self._tick()
            else:
                self.tasks.update(loop.create_task(self.user()) for _ in range(self.spec["users"]))
            try:
                await asyncio.wait_for(self.stopping.wait(), self.spec["max_duration"])
            except TimeoutError:
                self.stopping.set()
            if self._timer is not None:
                self._timer.cancel()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=6.0)
        Path(self.spec["output"]).write_text(json.dumps(self.records))


def client_worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(ClientWorker(spec).run())
    else:  # the suite's worker uses uvloop when present: the same loop for all
        uvloop.run(ClientWorker(spec).run())
    return 0


# -- the timer control (a separate process) ------------------------------------------------------


class TimerControl:
    """A process that only keeps the open model's schedule (no requests): the machine's own timer lag."""

    def __init__(self, proc: subprocess.Popen, output: Path) -> None:
        self.proc = proc
        self.output = output

    def stop(self) -> list[tuple[float | None, float, float, bool]]:
        """Stop it; its ticks as records (scheduled, fired, fired, ok) so :func:`summarize` takes them."""
        stop_process(self.proc, 10)
        ticks = json.loads(self.output.read_text()) if self.output.exists() else []
        return [(scheduled, fired, fired, True) for scheduled, fired in ticks]


def start_timer_control(rate: float, max_duration: float, work: Path) -> TimerControl:
    ready, output = work / "timer-ready", work / "timer-ticks.json"
    for path in (ready, output):
        path.unlink(missing_ok=True)
    spec_path = work / "timer-spec.json"
    spec_path.write_text(
        json.dumps({"rate": rate, "max_duration": max_duration, "ready": str(ready), "output": str(output)})
    )
    proc = subprocess.Popen([sys.executable, __file__, "--timer-control", str(spec_path)], cwd=ROOT)
    wait_for_file(ready, proc, 30, "the timer control")
    return TimerControl(proc, output)


def timer_control_main(spec_path: str) -> int:
    """Fire a callback on the open model's schedule (``loop.call_at``, as the suite's worker) and record when
    each fired, until SIGTERM or ``max_duration``."""
    spec = json.loads(Path(spec_path).read_text())

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        ticks: list[tuple[float, float]] = []
        t0 = time.monotonic()
        seq = count()
        rate = spec["rate"]

        def tick() -> None:
            now = time.monotonic()
            while True:
                scheduled = t0 + next(seq) / rate
                if scheduled > now:
                    loop.call_at(scheduled, lambda s=scheduled: fire(s))
                    return
                ticks.append((scheduled, time.monotonic()))

        def fire(scheduled: float) -> None:
            ticks.append((scheduled, time.monotonic()))
            tick()

        Path(spec["ready"]).write_text(repr(t0))
        tick()
        try:
            await asyncio.wait_for(stopping.wait(), spec["max_duration"])
        except TimeoutError:
            pass
        Path(spec["output"]).write_text(json.dumps(ticks))

    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())
    return 0


# -- the hello server (a separate process) ----------------------------------------------------------


def hello_server_main(port: int) -> int:
    """Serve ``GET /hello/{id}`` and ``POST /hello`` with ``{"id": 1}`` on 127.0.0.1:``port`` until SIGTERM."""
    from aiohttp import web

    body = b'{"id":1}'

    async def hello(request: web.Request) -> web.Response:
        if request.can_read_body:
            await request.read()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/hello/{id}", hello)
    app.router.add_post("/hello", hello)
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host=LOOPBACK, port=port, access_log=None, print=None, handle_signals=True)
    return 0


def start_hello_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--hello-server", str(port)], cwd=ROOT)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/hello/1", timeout=1).status_code == 200, 20, "the hello server")
    except BaseException:
        stop_process(proc, 5)
        raise
    return proc, url


# -- main --------------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s windows (under a minute in all)")
    parser.add_argument("--seconds", type=float, help="measured window per run (default 5, --quick 2)")
    parser.add_argument("--rounds", type=int, help="rounds of every run, figures summed (default 2, --quick 1)")
    parser.add_argument("--rate", type=float, help="open-model rate, requests/s (default: behave.ini load_heavy)")
    parser.add_argument("--users", type=int, default=10, help="concurrent users of the closed model")
    parser.add_argument("--only", choices=("users", "hello"), help="one target only")
    parser.add_argument(
        "--generators",
        default=",".join(GENERATORS),
        metavar="LIST",
        help="comma-separated generators to run (the suite's always runs; e.g. locust alone, to "
        "compare a change of the suite's worker on a busy machine)",
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="N processes that only burn CPU run throughout, as on a busy shared machine",
    )
    parser.add_argument("--client-worker", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--hello-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--timer-control", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_worker:
        return client_worker_main(args.client_worker)
    if args.hello_server:
        return hello_server_main(args.hello_server)
    if args.timer_control:
        return timer_control_main(args.timer_control)
    # find_spec, not import: importing locust monkey-patches this process with gevent
    if importlib.util.find_spec("locust") is None:
        print("locust is not installed: pip install -r bench/requirements.txt", file=sys.stderr)
        return 2

    from support.run.suite import start_suite

    settings = bench_settings()
    rate = args.rate or settings.load_heavy
    window = Window(warmup=0.5 if args.quick else 1.0, seconds=args.seconds or (2.0 if args.quick else 5.0))
    rounds = args.rounds or (1 if args.quick else 2)
    targets = [t for t in ("users", "hello") if args.only in (None, t)]
    generators = tuple(g for g in GENERATORS if g == "suite" or g in args.generators.split(","))
    print(
        f"{machine()}; open model at {rate:g}/s, closed model with {args.users} users; "
        f"{rounds} round(s) of {window.warmup:g} s warm-up + {window.seconds:g} s measured per run"
        f"{f'; {args.busy} CPU burners running' if args.busy else ''}",
        flush=True,
    )
    work = Path(settings.work_root) / f"bench-loadgen-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    suite = None
    hello: subprocess.Popen | None = None
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    results: dict[tuple[str, str, str], Measured] = {}
    jobs: list[Job] = []
    try:
        urls = {}
        if "users" in targets:
            suite = start_suite(settings)
            suite.begin_scenario("loadgen benchmark")  # the users table empty, the stack healthy
            urls["users"] = suite.stack.api_url
        if "hello" in targets:
            hello, urls["hello"] = start_hello_server()
        jobs = [
            Job(
                target,
                urls[target],
                model,
                rate,
                args.users,
                settings.load_write_fraction if target == "users" else 0.0,
            )
            for target in targets
            for model in ("open", "closed")
        ]
        for round_index in range(rounds):
            for index, job in enumerate(jobs):
                shift = (index + round_index) % len(generators)  # each generator takes every place in turn
                for generator in generators[shift:] + generators[:shift]:
                    this_round = RUNNERS[generator](job, window, work)
                    for measured in this_round:
                        key = (job.target, job.workload, measured.generator)
                        if key in results:
                            results[key].add(measured)
                        else:
                            results[key] = measured
                    measured = this_round[0]
                    print(
                        f"  {job.target:<5} {job.workload:<12} {generator:<6} {measured.per_second:>8,.0f} req/s  "
                        f"{measured.per_cpu_second or 0:>8,.0f} req/CPU-s",
                        flush=True,
                    )
    finally:
        for burner in burners:
            stop_process(burner, 5)
        if hello is not None:
            stop_process(hello, 10)
        if suite is not None:
            suite.close()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        table(
            [
                "target",
                "workload",
                "generator",
                "req/s",
                "req/CPU-s",
                "CPU",
                "p50 ms",
                "p99 ms",
                "lag p99 ms",
                "errors",
            ],
            [
                results[(j.target, j.workload, g)].row()
                for j in jobs
                for g in generators + ("timer",)
                if (j.target, j.workload, g) in results
            ],
        )
    )
    by = results
    ratio_rows = []
    cpu_ratios: list[float] = []
    for target, workload in ((j.target, j.workload) for j in jobs):
        ours = by[(target, workload, "suite")]
        row = [target, workload]
        for other in generators[1:]:
            theirs = by[(target, workload, other)]
            row += [ratio(ours.per_cpu_second, theirs.per_cpu_second), ratio(ours.per_second, theirs.per_second)]
            if other == "locust" and ours.per_cpu_second and theirs.per_cpu_second:
                cpu_ratios.append(ours.per_cpu_second / theirs.per_cpu_second)
        ratio_rows.append(row)
    print()
    print(
        table(
            ["target", "workload"] + [h for other in generators[1:] for h in (f"suite/{other} req/CPU-s", "req/s")],
            ratio_rows,
        )
    )
    lags = [percentile(m.lags, 99) for m in results.values() if m.generator == "suite" and m.lags]
    worst_lag = max((lag for lag in lags if lag is not None), default=None)
    worst_ratio = min(cpu_ratios, default=None)
    controls = [percentile(m.lags, 99) for m in results.values() if m.generator == "timer" and m.lags]
    worst_control = max((lag for lag in controls if lag is not None), default=None)
    print()
    print(
        f"goal: suite/locust requests per CPU-second >= {CPU_RATIO_GOAL:g}: worst {ratio(worst_ratio, 1.0)}"
        f" -> {'met' if worst_ratio is not None and worst_ratio >= CPU_RATIO_GOAL else 'NOT met'}"
    )
    print(
        f"goal: open-model schedule lag p99 < {LAG_GOAL * 1000:g} ms at {rate:g}/s: worst {ms(worst_lag, 2)} ms"
        f" -> {'met' if worst_lag is not None and worst_lag < LAG_GOAL else 'NOT met'}"
        f" (a bare timer loop in the same windows: worst {ms(worst_control, 2)} ms, the machine's own share)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
