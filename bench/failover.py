"""Failover of the replicated stack: from the primary's death to the first acknowledged write on the new primary.

    python bench/failover.py [--rounds 3] [--interval 0.02]

Starts stack/ha (process backend, under /tmp/chaos-suite-bench: three Patroni
nodes, three etcd members, HAProxy) and, ``--rounds`` times: a writer thread
commits one row every ``--interval`` s through HAProxy's write frontend on a new
connection each time (as a pool that reconnects would), noting which server
answered (``inet_server_port()``); the primary node is killed (SIGKILL to Patroni
and its PostgreSQL, kept down); the failover time is from the kill to the first
commit acknowledged by another server. The old primary is started again and the
cluster made whole before the next round.

Printed last, side by side: each round's failover time against Patroni's floor
as configured (``ttl``: the dead primary's leader key lives that long), and
``loop_wait`` and ``retry_timeout``; a failover can only beat ``ttl`` when the
old primary released its key, which a killed one cannot.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_settings, machine, table  # noqa: E402
from support.cluster.controller import ClusterController  # noqa: E402
from support.faults.cluster import NodeDown  # noqa: E402
from support.run.suite import start_suite  # noqa: E402
from support.stack import database  # noqa: E402


class Writer:
    """Commits a row every ``interval`` s through ``dsn``; keeps ``(monotonic end, server port)`` of each success."""

    def __init__(self, dsn: str, interval: float) -> None:
        self.dsn, self.interval = dsn, interval
        self.acks: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with database.connect(self.dsn, 5.0) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS bench_failover (t double precision)")
        while not self._stop.is_set():
            try:
                with database.connect(self.dsn, 2.0, wait_for_slot=False) as conn, conn.cursor() as cur:
                    cur.execute("INSERT INTO bench_failover VALUES (%s); SELECT inet_server_port()", (time.time(),))
                    port = cur.fetchone()[0]
                self.acks.append((time.monotonic(), int(port)))
            except database.DatabaseError:
                pass
            self._stop.wait(self.interval)  # the writer's pace, not a synchronisation

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    settings = bench_settings(stack_file="stack/ha/stack.toml")
    started = time.monotonic()
    suite = start_suite(settings)
    print(f"stack/ha started in {time.monotonic() - started:.1f} s", flush=True)
    rows = []
    try:
        stack = suite.stack
        cluster = next(iter(stack.replicated.values()))
        options = cluster.options
        controller = ClusterController(cluster)
        for round_ in range(1, args.rounds + 1):
            controller.wait_healthy_replicas(len(cluster.nodes) - 1, 120)
            writer = Writer(stack.admin_dsn, args.interval)
            time.sleep(1.0)  # a second of writes on the old primary before the kill: the baseline, not a wait
            fault = NodeDown(controller, stack.services, "primary", settings.start_timeout)
            old_port = stack.services[controller.primary(10)].address.port
            fault.inject()
            killed = time.monotonic()
            deadline = killed + 60
            first = None
            while first is None and time.monotonic() < deadline:
                first = next((t for t, port in writer.acks if t > killed and port != old_port), None)
                time.sleep(0.01)  # polling what the writer recorded, with a deadline
            writer.stop()
            failover = None if first is None else first - killed
            print(f"round {round_}: {fault.node} killed; first write on the new primary after "
                  f"{'-' if failover is None else f'{failover:.2f} s'}", flush=True)  # fmt: skip
            rows.append(
                [round_, fault.node, "-" if failover is None else f"{failover:.2f}", options.ttl, options.loop_wait,
                 options.retry_timeout, "-" if failover is None else f"{failover / options.ttl:.2f}"]
            )  # fmt: skip
            fault.heal()
        controller.close()
    finally:
        suite.close()
    print()
    print(machine())
    headers = ["round", "killed", "failover s", "ttl s (floor)", "loop_wait s", "retry_timeout s", "failover / ttl"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
