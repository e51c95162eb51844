"""What the fault proxy costs: the API's throughput, and ``SELECT 1`` loops, direct versus through the proxy.

    python bench/proxy_overhead.py [--seconds 2] [--rounds 3] [--clients 1,8] [--api-concurrency 8]
                                   [--loop auto|uvloop|asyncio] [--only sql|api]

Starts a private PostgreSQL cluster (as ``nobody`` when run as root), the
proxy server process (no toxic) and two instances of the reference API (one
uvicorn worker each): one connected to PostgreSQL directly, one through the
proxy. Then it measures, in rounds that alternate direct and proxied so drift
hits both alike:

- ``sql``: ``SELECT 1`` loops on persistent autocommit psycopg2 connections,
  one thread per connection: the smallest exchange PostgreSQL has, the proxy's
  worst case;
- ``api``: ``GET /users/{id}`` (a one-row read) from ``--api-concurrency``
  aiohttp connections in a closed loop: what the suite's scenarios load.

Prints requests/s, p50/p99 latency and the proxy's CPU use (share of one core)
side by side, and the ratios proxied/direct last. On a small machine the
proxy's CPU is taken from the others, so the ratio includes that contention.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import psycopg2  # noqa: E402

from support.backends.process.backend import ApiProcess, connection_values  # noqa: E402
from support.backends.process.pg_binaries import find_pg_binaries, run_as_for  # noqa: E402
from support.backends.process.postgres import PostgresProcess  # noqa: E402
from support.core.config import Settings  # noqa: E402
from support.core.waiting import wait_until  # noqa: E402
from support.load.history import percentile  # noqa: E402
from support.proxy.client import ProxyServer  # noqa: E402
from support.stack.stack_file import DEFAULT_STACK_FILE, load_stack_file  # noqa: E402


@dataclass
class Result:
    """Requests and their latencies (s) over ``elapsed`` seconds of one or more rounds."""

    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    proxy_cpu: float = 0.0  # CPU seconds the proxy process spent during these rounds
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def latency_ms(self, p: float) -> float:
        """The ``p``-th latency percentile (nearest rank, 0 < p <= 100) in milliseconds; 0 without requests."""
        return (percentile(self.latencies, p) or 0.0) * 1000.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, from /proc (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(dsn: str, clients: int, seconds: float, into: Result) -> None:
    """``clients`` threads loop ``SELECT 1`` for ``seconds`` s (after a short warm-up) on their own connection."""
    connections = [psycopg2.connect(dsn, connect_timeout=5) for _ in range(clients)]
    for conn in connections:
        conn.autocommit = True
    barrier = threading.Barrier(clients + 1)
    per_thread: list[list[float]] = [[] for _ in range(clients)]
    window: list[float] = []

    def loop(index: int) -> None:
        cur = connections[index].cursor()
        for _ in range(50):  # warm-up: plan cache, TCP windows
            cur.execute("SELECT 1")
            cur.fetchone()
        barrier.wait()
        latencies = per_thread[index]
        end = window[1]
        clock = time.perf_counter
        while True:
            started = clock()
            if started >= end:
                break
            cur.execute("SELECT 1")
            cur.fetchone()
            latencies.append(clock() - started)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter() + 0.05
    window.extend([start, start + seconds])
    barrier.wait()
    for thread in threads:
        thread.join(seconds + 30)
    for conn in connections:
        conn.close()
    for latencies in per_thread:
        into.requests += len(latencies)
        into.latencies.extend(latencies)
    into.elapsed += time.perf_counter() - window[0]


async def _api_round(url: str, concurrency: int, seconds: float, into: Result) -> None:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:

        async def get() -> bool:
            async with session.get(f"{url}/users/1") as response:
                await response.read()
                return response.status == 200

        await asyncio.gather(*(get() for _ in range(concurrency * 10)))  # warm-up: connections, pools
        clock = time.perf_counter
        start = clock()
        end = start + seconds

        async def worker() -> None:
            while (started := clock()) < end:
                if await get():
                    into.requests += 1
                    into.latencies.append(clock() - started)
                else:
                    into.errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        into.elapsed += clock() - start


def run_api_round(url: str, concurrency: int, seconds: float, into: Result) -> None:
    """``concurrency`` aiohttp connections loop ``GET /users/1`` for ``seconds`` s after a warm-up."""
    asyncio.run(_api_round(url, concurrency, seconds, into))


def start_api(postgres: PostgresProcess, port: int, app_password: str, run_dir: Path, app: str) -> ApiProcess:
    """The reference API on its own free port, reaching PostgreSQL at 127.0.0.1:``port``; ready with user 1."""
    run_dir.mkdir(parents=True, exist_ok=True)
    definition = load_stack_file(DEFAULT_STACK_FILE)
    values = {
        **connection_values("127.0.0.1", port, "users", "app", app_password),
        "stack_dir": str(DEFAULT_STACK_FILE.parent),
    }
    command = tuple(app if part == "users_api.main:app" else part for part in definition.api.command)
    api = ApiProcess(replace(definition.api, command=command), values, run_dir)
    api.start(30)

    def user_one_readable() -> bool:
        if httpx.get(f"{api.url}/users/1", timeout=2).status_code == 200:
            return True
        httpx.post(f"{api.url}/users", json={"name": "bench", "email": "bench@example.com"}, timeout=2)
        return False

    wait_until(user_one_readable, 30, f"the API on :{api.address.port} serving user 1")
    return api


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measured round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per path and client count")
    parser.add_argument("--clients", default="1,8", help="comma-separated concurrent connection counts")
    parser.add_argument("--api-concurrency", type=int, default=8, help="concurrent HTTP connections to the API")
    parser.add_argument("--loop", default="auto", choices=("auto", "uvloop", "asyncio"), help="the proxy's event loop")
    parser.add_argument("--only", choices=("sql", "api"), help="run one of the two workloads")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]

    settings = Settings()
    run_as = run_as_for(settings.pg_user)
    bins = find_pg_binaries(settings.pg_bin, run_as, settings.work_root_path / "cache")
    run_dir = settings.work_root_path / f"bench-proxy-{secrets.token_hex(4)}"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o755)
    postgres = PostgresProcess(bins, run_as, run_dir, secrets.token_urlsafe(12))
    proxy_server: ProxyServer | None = None
    apis: list[ApiProcess] = []
    try:
        postgres.initdb()
        postgres.start(30)
        proxy_server = ProxyServer.start(run_dir, loop=args.loop)
        with proxy_server.client() as client:
            proxied_port = client.create_proxy("postgres", postgres.address).port
        direct_dsn = postgres.dsn()
        proxied_dsn = direct_dsn.replace(f"port={postgres.address.port}", f"port={proxied_port}")
        print(
            f"PostgreSQL on :{postgres.address.port}, proxy ({proxy_server.loop} loop) on :{proxied_port}; "
            f"{args.rounds} rounds x {args.seconds:g} s per path and workload",
            flush=True,
        )
        results: dict[tuple[str, str], Result] = {}
        order = [("direct", "proxied"), ("proxied", "direct")]
        if args.only != "api":
            for clients in client_counts:
                for round_index in range(args.rounds):
                    for path in order[round_index % 2]:
                        dsn = direct_dsn if path == "direct" else proxied_dsn
                        result = results.setdefault((f"SELECT 1, {clients} conn", path), Result())
                        cpu_before = cpu_seconds(proxy_server.pid)
                        run_round(dsn, clients, args.seconds, result)
                        result.proxy_cpu += cpu_seconds(proxy_server.pid) - cpu_before
        if args.only != "sql":
            app_password = secrets.token_urlsafe(12)
            conn = psycopg2.connect(direct_dsn, connect_timeout=5)
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("CREATE ROLE app LOGIN PASSWORD %s", (app_password,))
                    cur.execute("CREATE DATABASE users OWNER app")
            finally:
                conn.close()
            urls = {}
            for path, port in (("direct", postgres.address.port), ("proxied", proxied_port)):
                apis.append(start_api(postgres, port, app_password, run_dir / path, "users_api.main:app"))
                urls[path] = apis[-1].url
            workload = f"API GET, {args.api_concurrency} conn"
            for round_index in range(args.rounds):
                for path in order[round_index % 2]:
                    result = results.setdefault((workload, path), Result())
                    cpu_before = cpu_seconds(proxy_server.pid)
                    run_api_round(urls[path], args.api_concurrency, args.seconds, result)
                    result.proxy_cpu += cpu_seconds(proxy_server.pid) - cpu_before
        print(
            f"{'workload':<22} {'path':<8} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
            f"{'proxy CPU':>10}"
        )
        for (workload, path), result in results.items():
            cpu = f"{result.proxy_cpu / result.elapsed:>9.0%}" if path == "proxied" else f"{'':>9}-"
            print(
                f"{workload:<22} {path:<8} {result.per_second:>11,.0f} {result.latency_ms(50):>8.3f} "
                f"{result.latency_ms(99):>8.3f} {result.errors:>7} {cpu}"
            )
        ratios = []
        for workload in dict.fromkeys(w for w, _ in results):
            direct, proxied = results[(workload, "direct")], results[(workload, "proxied")]
            ratios.append(
                f"{workload}: throughput {proxied.per_second / direct.per_second:.2f}, "
                f"p50 latency {proxied.latency_ms(50) / direct.latency_ms(50):.2f}x"
            )
        print("ratio proxied/direct: " + "; ".join(reversed(ratios)))
    finally:
        for api in apis:
            api.close()
        if proxy_server is not None:
            proxy_server.stop()
        postgres.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
