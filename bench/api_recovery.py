"""The reference API's own recovery: once PostgreSQL accepts connections again, how soon does it serve writes?

    python bench/api_recovery.py [--quick] [--repeat 10] [--interval 0.005] [--down 0.5]

Starts the suite's stack (process backend, under /tmp/chaos-suite-bench; the
API reaches PostgreSQL through the suite's link proxy, as in every scenario)
and, ``--repeat`` times for each way of taking PostgreSQL away, polls two
probes every ``--interval`` s from threads of their own:

- ``SELECT 1`` on a new direct connection to PostgreSQL (the suite's admin
  DSN), so "PostgreSQL accepts connections" is observed, not assumed;
- ``POST /users`` through the API (a keep-alive HTTP connection).

The ways: ``restart`` (``fast`` shutdown, then start), ``restart immediate``
(crash recovery on start) and ``stop/start`` (down for ``--down`` s).

``db ready`` is the end of the first successful ``SELECT 1`` that started after
the last failed one; ``api ready`` the end of the first successful write that
started after the last failed write. The delay is ``api ready - db ready``
(negative: the API was back before the direct probe saw PostgreSQL). Printed
last per way: p50 and max of the delay, the writes that failed after ``db
ready``, and the goal (within one probe interval; well under 1 s).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psycopg2  # noqa: E402

from bench.common import bench_settings, machine, pause_until, percentile, table  # noqa: E402
from support.faults import FaultLedger, ServiceRestart, ServiceStop  # noqa: E402
from support.suite import start_suite  # noqa: E402
from support.waiting import wait_until  # noqa: E402

WAYS = ("restart", "restart immediate", "stop/start")
GOAL = 1.0  # s: "well under 1 s"
OBSERVE_AFTER = 0.3  # s the probes keep running once the API is back, so a relapse is seen


@dataclass
class Probe:
    """A check called every ``interval`` s (start to start) in its own thread; records (start, end, ok)."""

    check: Callable[[], bool]
    interval: float
    records: list[tuple[float, float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_start = time.monotonic()
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                ok = bool(self.check())
            except Exception:  # noqa: BLE001 - any failure of the probe is a failed probe
                ok = False
            self.records.append((start, time.monotonic(), ok))
            next_start = max(next_start + self.interval, time.monotonic())
            # the probe interval is the probe's schedule, not a synchronisation
            self._stop.wait(max(0.0, next_start - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def ready_at(self, since: float) -> float | None:
        """End of the first success that started after the last failure since ``since`` (None: not yet)."""
        mine = [r for r in list(self.records) if r[0] >= since]
        last_failure = max((s for s, _, ok in mine if not ok), default=None)
        if last_failure is None:
            return None
        return min((e for s, e, ok in mine if ok and s > last_failure), default=None)

    def failures(self, since: float) -> int:
        return sum(1 for s, _, ok in list(self.records) if s >= since and not ok)


@dataclass
class Trial:
    way: str
    db_down: float  # s from the first failed SELECT 1 to db ready
    delay: float | None  # s, api ready - db ready
    writes_failed_after: int  # writes that started after db ready and failed


def run_trial(way: str, stack, ledger: FaultLedger, interval: float, down: float, seq: itertools.count) -> Trial:
    postgres = stack.service("postgres")

    def select_one() -> bool:
        conn = psycopg2.connect(stack.admin_dsn, connect_timeout=1)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()

    with httpx.Client(base_url=stack.api_url, timeout=2.0) as client:
        def write() -> bool:
            n = next(seq)
            return client.post("/users", json={"name": f"probe-{n}", "email": f"probe-{n}@bench.test"}).status_code == 201

        db, api = Probe(select_one, interval), Probe(write, interval)
        db.start()
        api.start()
        try:
            wait_until(lambda: db.records and api.records and db.records[-1][2] and api.records[-1][2], 10,
                       "both probes succeeding before the fault")
            began = time.monotonic()
            if way == "stop/start":
                ledger.hold(ServiceStop(postgres), down)
            else:
                ledger.inject(ServiceRestart(postgres, "fast" if way == "restart" else "immediate"))
            db_ready = wait_until(lambda: db.ready_at(began), 30, "SELECT 1 succeeding again")
            api_ready = wait_until(lambda: api.ready_at(began), 30, "the API serving writes again")
            # a relapse after the first success must be seen, so the probes run a little longer
            pause_until(max(db_ready, api_ready) + OBSERVE_AFTER)
        finally:
            db.stop()
            api.stop()
    first_db_failure = min((s for s, _, ok in db.records if s >= began and not ok), default=db_ready)
    api_ready_final = api.ready_at(began)
    return Trial(way, db_ready - first_db_failure, None if api_ready_final is None else api_ready_final - db_ready,
                 sum(1 for s, _, ok in api.records if s >= db_ready and not ok))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 trials per way (under a minute)")
    parser.add_argument("--repeat", type=int, help="trials per way (default 10, --quick 3)")
    parser.add_argument("--interval", type=float, default=0.005, help="probe interval, s")
    parser.add_argument("--down", type=float, default=0.5, help="seconds PostgreSQL stays stopped in stop/start")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 10)

    settings = bench_settings()
    print(f"{machine()}; {repeat} trials per way, probes every {args.interval * 1000:g} ms", flush=True)
    suite = start_suite(settings)
    trials: list[Trial] = []
    seq = itertools.count()
    try:
        state = suite.begin_scenario("api recovery benchmark")
        try:
            for _ in range(repeat):
                for way in WAYS:  # interleaved, so drift on this shared machine hits every way alike
                    trial = run_trial(way, suite.stack, state.ledger, args.interval, args.down, seq)
                    trials.append(trial)
                    delay = "-" if trial.delay is None else f"{trial.delay * 1000:+.1f} ms"
                    print(f"  {way:<17} postgres away {trial.db_down:.3f} s, API writes {delay} after SELECT 1,"
                          f" {trial.writes_failed_after} failed after", flush=True)
        finally:
            suite.end_scenario(state)
    finally:
        suite.close()

    rows = []
    worst_all: float | None = None
    for way in WAYS:
        mine = [t for t in trials if t.way == way]
        delays = [t.delay for t in mine if t.delay is not None]
        p50, worst = percentile(delays, 50), max(delays, default=None)
        if worst is not None:
            worst_all = worst if worst_all is None else max(worst_all, worst)
        rows.append([way, str(len(mine)), f"{percentile([t.db_down for t in mine], 50) or 0:.3f}",
                     "-" if p50 is None else f"{p50 * 1000:+.1f}", "-" if worst is None else f"{worst * 1000:+.1f}",
                     str(sum(t.writes_failed_after for t in mine)), str(len(mine) - len(delays))])
    print()
    print(table(["way", "trials", "pg away p50 s", "delay p50 ms", "delay max ms", "writes failed after",
                 "no outage seen"], rows))
    print()
    if worst_all is None:
        print("goal: not measured (no trial saw the API fail)")
    else:
        print(f"goal: API serves writes within one probe interval ({args.interval * 1000:g} ms) of SELECT 1: worst "
              f"{worst_all * 1000:+.1f} ms -> {'met' if worst_all <= args.interval else 'NOT met'}; "
              f"well under {GOAL:g} s -> {'met' if worst_all < GOAL else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
