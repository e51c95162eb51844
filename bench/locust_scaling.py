"""The ``locust`` load engine: throughput with 1 and 2 Locust workers, and its CPU cost against the native worker.

    python bench/locust_scaling.py [--seconds 5] [--rounds 2] [--users 8] [--rate R]

Against the no-work endpoint (``GET /hello/1`` of the tiny aiohttp server of
``bench/loadgen_vs_locust.py``, a separate process: the reference API has no
endpoint without database work), all on 127.0.0.1, it runs the suite's own
engines exactly as a scenario starts them (``support.load.engine``: the native
worker through ``start_load``, Locust through ``start_locust_load``, its master and
workers, every request recorded into the history):

- closed model, ``--users`` users per generator process and no think time (so
  each process is saturated): the native worker, Locust with 1 worker, Locust with 2
  workers (twice the users). Printed: requests/s, and requests per CPU-second of
  the generator (native: the worker process; Locust: its worker processes, and
  with the master's CPU as well);
- open model at ``--rate`` (default: behave.ini ``load_heavy``): the native worker,
  Locust with 1 and 2 workers; printed: the p99 schedule lag (start minus scheduled
  time, from the history).

Runs take turns in a rotated order per round so drift hits all alike; each round's
window starts ``--warmup`` s after the schedule starts, and only requests that
ended inside it count. Printed last: Locust 2 workers / 1 worker in requests/s (the
scaling, bounded by the machine's cores, which the server shares), and native /
one Locust worker in requests per CPU-second, side by side.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_settings, cpu_seconds, machine, ms, pause_until, percentile, table  # noqa: E402
from bench.loadgen_vs_locust import HELLO_WORKLOAD, start_hello_server, stop_process  # noqa: E402
from support.load.controller import LoadRun, start_load  # noqa: E402
from support.load.locust_engine import start_locust_load  # noqa: E402
from support.load.spec import LoadSpec  # noqa: E402

#: (label, engine, Locust workers)
GENERATORS = (("native", "native", 0), ("locust 1 worker", "locust", 1), ("locust 2 workers", "locust", 2))


@dataclass
class Figures:
    """One generator's sums over the rounds of one model."""

    seconds: float = 0.0
    requests: int = 0
    errors: int = 0
    cpu_workers: float = 0.0  # the processes that send (native worker; Locust workers)
    cpu_master: float = 0.0  # Locust's master (0 for native)
    lags: list[float] = field(default_factory=list)

    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def per_cpu(self, with_master: bool = False) -> float | None:
        cpu = self.cpu_workers + (self.cpu_master if with_master else 0.0)
        return self.requests / cpu if cpu > 0 else None


def _start(engine: str, workers: int, spec: LoadSpec, work: Path) -> LoadRun:
    if engine == "native":
        return start_load(spec, work)
    return start_locust_load(spec, work, workers=workers)


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def measure(engine: str, workers: int, spec: LoadSpec, work: Path, warmup: float, seconds: float) -> Figures:
    """One run: start, wait ``warmup`` s, measure ``seconds`` s (CPU at both edges), stop; the figures of the window."""
    run = _start(engine, workers, spec, work)
    try:
        assert run.t0 is not None
        senders = [run.pid] if engine == "native" else list(run.started["worker_pids"])
        master = [] if engine == "native" else [run.pid]
        pause_until(run.t0 + warmup)
        start, cpu0, m0 = time.monotonic(), _cpu(senders), _cpu(master)
        pause_until(start + seconds)
        end, cpu1, m1 = time.monotonic(), _cpu(senders), _cpu(master)
    finally:
        history = run.stop()
    inside = [r for r in history if start <= r.end < end]
    return Figures(
        seconds=end - start,
        requests=len(inside),
        errors=sum(r.outcome != "ok" for r in inside),
        cpu_workers=cpu1 - cpu0,
        cpu_master=m1 - m0,
        lags=[r.start - r.scheduled for r in history if start <= r.start < end],
    )


def _add(total: Figures, one: Figures) -> None:
    total.seconds += one.seconds
    total.requests += one.requests
    total.errors += one.errors
    total.cpu_workers += one.cpu_workers
    total.cpu_master += one.cpu_master
    total.lags += one.lags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after the start before the window")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every run, figures summed")
    parser.add_argument("--users", type=int, default=8, help="closed-model users per generator process")
    parser.add_argument("--rate", type=float, help="open-model rate, requests/s (default: behave.ini load_heavy)")
    args = parser.parse_args()
    settings = bench_settings()
    rate = args.rate or settings.load_heavy
    print(
        f"{machine()}; closed model {args.users} users per process, open model {rate:g}/s; "
        f"{args.rounds} round(s) of {args.warmup:g} s warm-up + {args.seconds:g} s measured per run",
        flush=True,
    )
    work = Path(settings.work_root) / f"bench-locust-{secrets.token_hex(4)}"
    work.mkdir(parents=True)
    hello: subprocess.Popen | None = None
    closed = {label: Figures() for label, _, _ in GENERATORS}
    opened = {label: Figures() for label, _, _ in GENERATORS}
    try:
        hello, url = start_hello_server()
        options = {"workload": HELLO_WORKLOAD.to_dict(), "write_fraction": 0.0, "max_duration": 120.0}
        for round_index in range(args.rounds):
            shift = round_index % len(GENERATORS)
            for label, engine, workers in GENERATORS[shift:] + GENERATORS[:shift]:
                users = args.users * max(1, workers)
                spec = LoadSpec.closed_users(url, users, run_id=f"c-{secrets.token_hex(3)}", **options)
                one = measure(engine, workers, spec, work, args.warmup, args.seconds)
                _add(closed[label], one)
                print(
                    f"  closed {label:<17} {one.rps():>8,.0f} req/s  {one.per_cpu() or 0:>8,.0f} req/CPU-s", flush=True
                )
                spec = LoadSpec.open_rate(url, rate, run_id=f"o-{secrets.token_hex(3)}", **options)
                one = measure(engine, workers, spec, work, args.warmup, args.seconds)
                _add(opened[label], one)
                lag = percentile(one.lags, 99)
                print(f"  open   {label:<17} {one.rps():>8,.0f} req/s  lag p99 {ms(lag, 2)} ms", flush=True)
    finally:
        if hello is not None:
            stop_process(hello, 10)
    rows = []
    for label, _, _ in GENERATORS:
        c, o = closed[label], opened[label]
        per, with_master = c.per_cpu(), c.per_cpu(with_master=True)
        rows.append(
            [
                label,
                f"{c.rps():,.0f}",
                "-" if per is None else f"{per:,.0f}",
                "-" if label == "native" or with_master is None else f"{with_master:,.0f}",
                str(c.errors),
                f"{o.rps():,.0f}",
                ms(percentile(o.lags, 99), 2),
                str(o.errors),
            ]
        )
    print()
    print(
        table(
            [
                "generator",
                "closed req/s",
                "req/CPU-s",
                "req/CPU-s with master",
                "errors",
                f"open {rate:g}/s req/s",
                "lag p99 ms",
                "errors",
            ],
            rows,
        )
    )
    one, two, native = closed["locust 1 worker"], closed["locust 2 workers"], closed["native"]
    scaling = two.rps() / one.rps() if one.rps() else None
    cost = (native.per_cpu() or 0) / (one.per_cpu() or 1)
    print()
    print(
        f"Locust 2 workers / 1 worker, closed req/s: {'-' if scaling is None else f'{scaling:.2f}'}"
        f" (bounded by {os.cpu_count()} cores shared with the server and the master)"
    )
    print(f"native / one Locust worker, req per CPU-second: {cost:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
