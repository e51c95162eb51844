"""The ``locust`` load engine (issue 15): Locust's master and workers send the scenarios' load.

- the suite's own process never imports Locust or gevent (Locust monkey-patches whoever imports it);
- every request of every worker reaches the history, with the workload's keys of each worker, on the
  suite's clock, in both models, and a worker started by hand with the documented command joins;
- ``-D load_engine=locust -D locust_workers=2`` runs the load scenarios on the reference stack green;
- the durability, recovery and status checkers catch the same broken variants as with the native engine.

The real runs go through behave (tests/suite_runner.py) against the reference API and its variants.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from suite_runner import BROKEN, REPO, leftovers, run_behave

from support.core.config import Settings, SettingsError
from support.evidence.progress import describe_load
from support.load.controller import LoadError
from support.load.locust_engine import parse_bind, start_locust_load, worker_command
from support.load.spec import LoadSpec

LOCUST = ("-D", "load_engine=locust", "-D", "locust_workers=2")
#: every feature with load steps (features/recovery has none today)
LOAD_FEATURES = (
    "features/load",
    "features/database/concurrency.feature",
    "features/database/db_faults.feature",
    "features/database/pool_exhaustion.feature",
)


# -- the suite's own process ---------------------------------------------------------------------


def test_the_suites_process_never_imports_locust_or_gevent() -> None:
    code = (
        "import sys, environment, support.run.scenario, support.load.engine, support.load.locust_engine\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent', 'geventhttpclient')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bad_engine_settings_are_refused_in_one_line() -> None:
    with pytest.raises(SettingsError, match=r"load_engine='locus' is unknown; use one of: native, locust"):
        Settings(load_engine="locus")
    with pytest.raises(SettingsError, match=r"at least one worker in all"):
        Settings(locust_workers=0)
    with pytest.raises(SettingsError, match=r"locust_master_bind='10.1.2.3:5557' is not on loopback"):
        Settings(load_engine="locust", locust_master_bind="10.1.2.3:5557")
    with pytest.raises(SettingsError, match=r"must be host:port"):
        Settings(load_engine="locust", locust_master_bind="5557")
    assert Settings(load_engine="locust", locust_master_bind="10.1.2.3:5557", allow_remote_targets=True)
    with pytest.raises(LoadError, match=r"must be host:port"):
        parse_bind("127.0.0.1", allow_remote=False)
    with pytest.raises(LoadError, match=r"is not on loopback .*set allow_remote_targets=true"):
        parse_bind("10.1.2.3:5557", allow_remote=False)
    with pytest.raises(LoadError, match=r"0.0.0.0 is the unspecified address.*set allow_remote_targets=true"):
        parse_bind("0.0.0.0:5557", allow_remote=False)
    host, port = parse_bind("127.0.0.1:0", allow_remote=False)
    assert host == "127.0.0.1" and 0 < port < 65536


def test_the_progress_line_names_the_locust_workers() -> None:
    progress = {"t": 2.0, "sent": 100, "ok": 99, "errors": 1, "rps": 50.0, "in_flight": 1, "lag_p99_ms": 9.0}
    assert "locust" not in describe_load(progress)
    assert describe_load({**progress, "workers": 2}).startswith("load   2.0 s · locust 2 workers · ")


# -- every request of every worker, against a counting server -------------------------------------


class _Counting(BaseHTTPRequestHandler):
    """The reference API's shape (POST /users, GET /users/{id}), counting what it is sent."""

    protocol_version = "HTTP/1.1"
    rows: dict[int, dict] = {}
    received: list[tuple[str, str]] = []
    lock = threading.Lock()

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            ident = len(self.rows) + 1
            self.rows[ident] = {"id": ident, **body}
            self.received.append(("write", body["email"]))
        self._answer(201, self.rows[ident])

    def do_GET(self) -> None:  # noqa: N802
        ident = int(self.path.rsplit("/", 1)[1])
        with self.lock:
            row = self.rows.get(ident)
            self.received.append(("read", row["email"] if row else ""))
        self._answer(200 if row else 404, row or {"detail": "not found"})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counting_server():
    _Counting.rows, _Counting.received = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _check_history(history, received, before: float, after: float, workers: int) -> None:
    assert len(history) == len(received), "every request the server got is in the history, and no other"
    assert all(r.outcome == "ok" for r in history), {r.error for r in history if r.outcome != "ok"}
    assert sorted((r.op, r.key) for r in history) == sorted(received)
    writers = {re.sub(r"-\d+@load\.test$", "", r.key).rsplit("-", 1)[1] for r in history if r.op == "write"}
    assert writers == {f"w{k}" for k in range(workers)}, "each worker writes keys of its own"
    assert len({r.key for r in history if r.op == "write"}) == sum(r.op == "write" for r in history)
    assert before <= min(r.start for r in history) and max(r.end for r in history) <= after, "the suite's clock"


def test_every_request_of_every_worker_is_recorded_in_both_models(tmp_path, counting_server) -> None:
    spec = LoadSpec.open_rate(counting_server, 80.0, request_timeout=2.0, max_duration=60)
    before = time.monotonic()
    run = start_locust_load(spec, tmp_path / "open", workers=2)
    assert run.started["workers"] == 2 and run.started["clock_error_ms"] == 0.0
    time.sleep(2.0)  # a load of two seconds: a duration, not a synchronisation
    history = run.stop()
    _check_history(history, _Counting.received, before, time.monotonic(), workers=2)
    launches = sorted(r.scheduled for r in history)
    assert len(launches) >= 120, len(launches)  # ~80/s for ~2 s
    gaps = [b - a for a, b in zip(launches, launches[1:])]
    assert abs(sum(gaps) / len(gaps) - 1 / 80) < 0.001, "the two workers' slots make one schedule of 80/s"

    _Counting.received = []
    spec = LoadSpec.closed_users(counting_server, 4, request_timeout=2.0, max_duration=60)
    before = time.monotonic()
    run = start_locust_load(spec, tmp_path / "closed", workers=2)
    assert run.started["users"] == 4
    time.sleep(1.0)
    history = run.stop()
    _check_history(history, _Counting.received, before, time.monotonic(), workers=2)
    assert all(r.scheduled == r.start for r in history), "a closed-model request starts when it is due"


def test_a_worker_started_with_the_documented_command_joins_the_master(tmp_path, counting_server) -> None:
    spec = LoadSpec.open_rate(counting_server, 40.0, request_timeout=2.0, max_duration=60)
    host, port = parse_bind("127.0.0.1:0", allow_remote=False)
    started: list = []
    starting = threading.Thread(
        target=lambda: started.append(
            start_locust_load(spec, tmp_path, workers=1, remote_workers=1, bind=f"{host}:{port}", ready_timeout=60)
        )
    )
    starting.start()
    # measured as a worker on another machine is (its own boot id): its true offset here is 0
    env = {**os.environ, "CHAOS_LOCUST_BOOT_ID": "another-machine", "PYTHONPATH": str(REPO)}
    with open(tmp_path / "by-hand.log", "wb") as log:
        by_hand = subprocess.Popen(worker_command(host, port), cwd=REPO, stdout=log, stderr=log, env=env)
    try:
        starting.join(timeout=90)
        assert started, (tmp_path / f"load-{spec.run_id}.log").read_text()[-2000:]
        run = started[0]
        assert run.started["workers"] == 2
        offsets, bound = list(run.started["clock_offsets_ms"].values()), run.started["clock_error_ms"]
        assert sorted(offsets, key=abs)[0] == 0.0, "the local worker reads the suite's own clock"
        assert 0 < bound < 50 and abs(sorted(offsets, key=abs)[1]) <= bound, (offsets, bound)
        time.sleep(1.5)
        history = run.stop()
        _check_history(history, _Counting.received, 0.0, time.monotonic(), workers=2)
        assert by_hand.wait(timeout=20) == 0, "the master's quit ends the worker started by hand"
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()


# -- the scenarios, on the reference stack and its broken variants ------------------------------------


def test_the_load_scenarios_pass_with_locust_and_two_workers(tmp_path) -> None:
    run = run_behave(tmp_path / "work", *LOCUST, *LOAD_FEATURES, timeout=1500)
    assert run.returncode == 0, run.output[-6000:]
    passed = re.search(r"\n(\d+) scenarios passed, 0 failed", run.output)
    assert passed and int(passed.group(1)) >= 20, run.output[-3000:]
    scenario_dirs = [d for run_dir in run.run_dirs for d in sorted(run_dir.glob("scenario-*"))]
    loaded = [d for d in scenario_dirs if list(d.glob("load-*.csv"))]
    assert len(loaded) >= 20, "every scenario's load went through Locust"
    for d in loaded:
        assert len(list(d.glob("load-*-worker*.log"))) == 2, d
    assert leftovers(run) == []


#: (variant, scenario that guards the property, the checker's message): as tests/test_broken_variants.py
#: and tests/test_db_faults.py expect them from the native engine
VARIANTS = [
    ("write_behind", "The API rides out a Postgres crash under heavy load", r"\d+ acknowledged writes? lost: "),
    (
        "keeps_dead_connections",
        "Terminated database sessions are replaced without failing a later request",
        r"the API never recovered: failing from",
    ),
    (
        "status_500",
        "Pool exhaustion answers 503 fast and the API serves normally afterwards",
        r"\d+ failed requests? not answered with 503: \d+ with another status \(500 x\d+",
    ),
]


@pytest.mark.parametrize(("variant", "scenario", "message"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_the_checkers_catch_the_broken_variants_with_locust(tmp_path, variant, scenario, message) -> None:
    stack = BROKEN / f"{variant}.toml"
    run = run_behave(tmp_path / "work", *LOCUST, "-D", f"stack_file={stack}", "-n", f"^{re.escape(scenario)}$")
    assert run.returncode != 0, run.output[-4000:]
    assert "1 scenario passed" not in run.output and "0 scenarios passed, 1 failed" in run.output, run.output[-3000:]
    assert re.search(message, run.output), run.output[-4000:]
    assert leftovers(run) == []
