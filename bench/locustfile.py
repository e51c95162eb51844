"""The Locust side of ``bench/loadgen_vs_locust.py``: the same requests as the suite's load worker.

Run by that benchmark as ``python -m locust -f bench/locustfile.py --headless ...``
with its settings in the environment:

- ``BENCH_TARGET``: ``users`` (the reference API: writes ``POST /users``, reads
  ``GET /users/{id}`` of acknowledged writes, content compared, as the suite's
  worker does) or ``hello`` (``GET /hello/1`` of a server that does no work);
- ``BENCH_WRITE_FRACTION``: share of writes for ``users`` (0..1);
- ``BENCH_RATE_PER_USER``: requests per second of each user
  (``constant_throughput``), 0 for a closed loop with no wait;
- ``BENCH_RUN_ID``: prefix of the unique emails;
- ``BENCH_READY``: file written with ``time.monotonic()`` once every user is spawned;
- ``BENCH_RECORDS``: file that receives one ``[start, end, ok]`` row per request
  (monotonic seconds) when Locust quits.

Each request is recorded from Locust's ``request`` event, which costs Locust
about what recording its history costs the suite's worker.
"""

from __future__ import annotations

import json
import os
import random
import time
from itertools import count
from pathlib import Path

from locust import constant, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

TARGET = os.environ.get("BENCH_TARGET", "users")
WRITE_FRACTION = float(os.environ.get("BENCH_WRITE_FRACTION", "0.5"))
RATE_PER_USER = float(os.environ.get("BENCH_RATE_PER_USER", "0"))
RUN_ID = os.environ.get("BENCH_RUN_ID", "locust")
READY = os.environ.get("BENCH_READY", "")
RECORDS = os.environ.get("BENCH_RECORDS", "")

_records: list[tuple[float, float, bool]] = []
_acked: list[tuple[int, str, str]] = []  # (id, name, email) of acknowledged writes, shared as in the worker
_seq = count()
_rng = random.Random()


@events.request.add_listener
def _record(response_time: float, exception: BaseException | None, **_: object) -> None:
    end = time.monotonic()
    _records.append((end - response_time / 1000.0, end, exception is None))


@events.spawning_complete.add_listener
def _ready(user_count: int, **_: object) -> None:
    if READY:
        Path(READY).write_text(repr(time.monotonic()))


@events.quitting.add_listener
def _dump(**_: object) -> None:
    if RECORDS:
        Path(RECORDS).write_text(json.dumps(_records))


class BenchUser(FastHttpUser):
    """One user; its requests are those of one closed-model user of the suite's worker."""

    wait_time = constant_throughput(RATE_PER_USER) if RATE_PER_USER > 0 else constant(0)
    host = "http://127.0.0.1"  # replaced by --host

    @task
    def one_request(self) -> None:
        if TARGET == "hello":
            with self.client.get("/hello/1", name="hello", catch_response=True) as response:
                if not isinstance(response.json(), dict):
                    response.failure("wrong content")
            return
        if not _acked or _rng.random() < WRITE_FRACTION:
            seq = next(_seq)
            name, email = f"user-{RUN_ID}-{seq}", f"{RUN_ID}-{seq}@load.test"
            with self.client.post(
                "/users", json={"name": name, "email": email}, name="write", catch_response=True
            ) as response:
                if response.status_code == 201:
                    row = response.json()
                    _acked.append((row["id"], name, email))
            return
        ident, name, email = _rng.choice(_acked)
        with self.client.get(f"/users/{ident}", name="read", catch_response=True) as response:
            row = response.json() if response.status_code == 200 else None
            if not isinstance(row, dict) or row.get("name") != name or row.get("email") != email:
                response.failure("wrong content")
