"""The Locust side of the ``locust`` load engine: the user class and the hooks each Locust worker runs.

A worker is started as ``python -m locust -f support/load/locustfile.py --worker
--master-host HOST --master-port PORT`` (by the master for local workers, by hand
on another machine); the master is :mod:`support.load.locust_master`. Locust
monkey-patches the whole process with gevent, so this module is imported only in
those processes, never in the suite's.

Each worker drives the same workload as the native worker: its operations drawn
by :class:`support.load.mix.Mix` (the same weights, write/read mix and keys; the
worker's keys carry ``<run_id>-w<index>`` so no two workers write the same key), the
same headers and login (the token fetched before the load and again after a
401), and the same outcomes: each answer is judged by :meth:`Mix.judge`; no
connection (refused) is ``fail``; any other transport error (timeout, reset,
a connect that timed out, which geventhttpclient does not tell apart from a
read timeout) is ``info``, so it is never counted as known not applied.

Every request is recorded from Locust's ``request`` event, in the worker's
``time.monotonic()``, and shipped to the master every 0.1 s as a custom message
(``chaos_rows``); the master moves the times onto its own clock with the offset it
measured (see :mod:`support.load.locust_master`).

Models. Closed: the master spawns ``users`` Locust users in all; each sends its next
request when its last one ended (``think_time`` s later). Open: each worker ``k`` of
``W`` owns the slots ``n = k, k + W, k + 2W ...`` of the one schedule
``t0 + n / rate``; a dispatcher greenlet hands each slot, at its time, to the Locust
user that became free most recently (so the few connections in use stay warm).
When no user is free the slot waits for one: Locust sends a request only from a
free user, so an outage that holds every user hides launches until one returns.
The worker has ``rate / W * request_timeout`` users and a margin to make that
rare, and every launch records its scheduled time, so the lag shows it.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.socket
from gevent.event import AsyncResult, Event
from geventhttpclient import URL, HTTPClient
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import WorkerRunner

from support.load.history import FAIL, INFO, OK
from support.load.malformed import MALFORMED, SLOW_PIECES, SLOW_SECONDS, MalformedShare
from support.load.mix import Mix
from support.stack.auth import AuthError
from support.stack.workload import Workload

__all__ = ["ChaosUser", "boot_id"]

monotonic = time.monotonic
_SHIP_INTERVAL = 0.1  # seconds between batches of records sent to the master


def boot_id() -> str:
    """This kernel's boot id: two processes with the same one read the same ``CLOCK_MONOTONIC``.

    ``CHAOS_LOCUST_BOOT_ID`` replaces it, so a test can make a worker on this machine be measured
    as one on another machine would be."""
    if os.environ.get("CHAOS_LOCUST_BOOT_ID"):
        return os.environ["CHAOS_LOCUST_BOOT_ID"]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


class _Plan:
    """What this worker sends, set by the master's ``chaos_spec`` message before the users spawn."""

    def __init__(self, data: dict[str, Any]) -> None:
        spec = data["spec"]
        self.spec = spec
        self.index = int(data["index"])
        self.count = int(data["count"])
        self.offset = float(data["offset"])  # this worker's monotonic clock minus the master's, s
        self.run = f"{spec['run_id']}-w{self.index}"
        self.workload = Workload.from_dict(spec["workload"]) if spec["workload"] else Workload()
        seed = spec.get("seed")
        rng = random.Random(None if seed is None else seed + self.index)
        url = urlsplit(spec["base_url"])
        self.origin = f"{url.scheme}://{url.netloc}"
        self.base = url.path.rstrip("/") + self.workload.base_path  # a base URL may carry a path
        self.mix = Mix(self.workload, spec["write_fraction"], self.run, self.base, rng)
        self.operations = {op.name: op for op in self.workload.operations}
        share = float(spec.get("malformed_share", 0.0))
        self.malformed = (
            MalformedShare(
                share, float(spec["malformed_after"]), self.workload, self.base, self.run, random.Random(seed)
            )
            if share
            else None
        )
        self.static = self.workload.header_values(self.run)
        self.headers = dict(self.static)
        self.generation = 0
        self.refreshing = False
        self.tokens = 0
        self.rows: list[tuple] = []
        self.lags: list[float] = []
        self.sent = 0
        self.open: dict[int, float] = {}
        self.ids = 0
        self.go = Event()
        self.stopping = Event()
        self.t0 = 0.0  # on this worker's clock
        self.idle: list[AsyncResult] = []  # free users waiting for a slot, the most recently freed last
        self.pending: deque[float] = deque()  # slots due while no user was free


_plan: _Plan | None = None
_runner: WorkerRunner | None = None


# -- auth ---------------------------------------------------------------------------------------


def _fetch_token(user: FastHttpUser | None) -> str:
    """A token from the workload's login (sent with the static headers only) or its command or variable."""
    plan = _plan
    assert plan is not None and plan.workload.auth is not None
    auth = plan.workload.auth
    if not auth.uses_login:
        return auth.token_from_source(plan.spec["request_timeout"])
    method, path, body, content_type = auth.login_request()
    url = URL(plan.origin)
    client = HTTPClient.from_url(
        url, network_timeout=plan.spec["request_timeout"], connection_timeout=plan.spec["request_timeout"]
    )
    try:
        answer = client.request(
            method, plan.base + path, body=body, headers={**plan.static, "Content-Type": content_type}
        )
        status, data = answer.status_code, answer.read()
    except Exception as error:  # noqa: BLE001 - any transport error is a failed login
        status, data = None, str(error).encode()
    finally:
        client.close()
    return auth.token_from_answer(status, data)


def _set_token(token: str | None) -> None:
    plan = _plan
    assert plan is not None
    headers = dict(plan.static)
    if token is not None and plan.workload.auth is not None:
        headers[plan.workload.auth.header] = plan.workload.auth.header_value(token)
    plan.headers = headers
    plan.generation += 1


def _refresh(generation: int) -> None:
    """After a 401 to the current token: fetch a new one, one fetch at a time."""
    plan = _plan
    if plan is None or plan.workload.auth is None or plan.refreshing or generation != plan.generation:
        return
    plan.refreshing = True

    def fetch() -> None:
        try:
            _set_token(_fetch_token(None))
            plan.tokens += 1
        except AuthError as error:
            print(f"loadgen: could not fetch a new token after a 401: {error}", file=sys.stderr)
        finally:
            plan.refreshing = False

    gevent.spawn(fetch)


# -- the open model's slots ---------------------------------------------------------------------


def _dispatch() -> None:
    """Hand each of this worker's slots, at its time, to the most recently freed user (or keep it pending)."""
    plan = _plan
    assert plan is not None
    rate, end = plan.spec["rate"], plan.t0 + plan.spec["max_duration"]
    i = 0
    while not plan.stopping.is_set():
        due = plan.t0 + (i * plan.count + plan.index) / rate
        if due >= end:
            break
        delay = due - monotonic()
        if delay > 0:
            plan.stopping.wait(delay)
            continue
        i += 1
        if plan.idle:
            plan.idle.pop().set(due)
        else:
            plan.pending.append(due)


def _take_slot() -> float:
    """Block until a slot is this user's; its scheduled time (this worker's clock)."""
    plan = _plan
    assert plan is not None
    if plan.pending:
        return plan.pending.popleft()
    slot = AsyncResult()
    plan.idle.append(slot)
    return slot.get()


# -- the user --------------------------------------------------------------------------------------


class ChaosUser(FastHttpUser):
    """One Locust user sending the workload's requests (see the module docstring for the two models)."""

    host = "http://127.0.0.1"  # replaced with the spec's base URL by the master
    max_retries = 0  # one attempt per request, as the native worker: a retried write would blur its outcome
    concurrency = 1

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.scheduled: float | None = None

    def wait_time(self) -> float:
        """Open model: wait (killable) for the next slot; closed model: the think time."""
        plan = _plan
        assert plan is not None
        if plan.spec["model"] == "open":
            self.scheduled = _take_slot()
            return 0.0
        return float(plan.spec["think_time"])

    def on_start(self) -> None:
        assert _plan is not None
        _plan.go.wait()

    @task
    def one_request(self) -> None:
        plan = _plan
        assert plan is not None
        if plan.spec["model"] == "open" and self.scheduled is None:
            self.wait()  # the first slot (later ones come in wait_time)
        if plan.stopping.is_set():
            Event().wait()  # stopping: send nothing more, wait to be killed by the quit
        start = monotonic()
        scheduled = self.scheduled if self.scheduled is not None else start
        self.scheduled = None
        plan.sent += 1
        plan.lags.append(start - scheduled)
        ident, plan.ids = plan.ids, plan.ids + 1
        plan.open[ident] = start
        kind = plan.malformed.draw(start - plan.t0) if plan.malformed is not None else None
        if kind is not None:
            self._malformed(kind, ident, scheduled, start)
            return
        operation, op, key, body, method, path, (data, content_type), expected = plan.mix.choose()
        headers = plan.headers if data is None else {**plan.headers, "Content-Type": content_type}
        context = {"chaos": (ident, operation.name, op, key, scheduled, start, body, expected, plan.generation)}
        # bytes go out as they are (geventhttpclient takes them; the annotation names str and dict only)
        self.client.request(method, path, data=data, headers=headers, name=operation.name, context=context)  # type: ignore[arg-type]

    def _malformed(self, kind: str, ident: int, scheduled: float, start: float) -> None:
        """One request of the malformed share (:mod:`support.load.malformed`), as the native worker sends it."""
        plan = _plan
        assert plan is not None and plan.malformed is not None
        share, context = plan.malformed, {"chaos_malformed": (ident, kind, scheduled, start)}
        body = share.bodies[kind]
        if kind != "slow_headers":
            headers = {**plan.headers, "Content-Type": "application/json"}
            self.client.request(share.method, share.path, data=body, headers=headers, name=MALFORMED, context=context)  # type: ignore[arg-type]
            return
        status, error = _slow_request(share.method, share.path, body, float(plan.spec["request_timeout"]))
        answer = type("SlowAnswer", (), {"status_code": status or 0, "error": error})()
        self.environment.events.request.fire(
            request_type=share.method,
            name=MALFORMED,
            response_time=(monotonic() - start) * 1000,
            response_length=0,
            response=answer,
            context=context,
            exception=None if status else OSError(error),
        )


def _slow_request(method: str, path: str, body: bytes, timeout: float) -> tuple[int | None, str]:
    """A slow-loris request (head in ``SLOW_PIECES`` pieces over ``SLOW_SECONDS``) on a connection of its own:
    (status, "") or (None, why)."""
    plan = _plan
    assert plan is not None
    url = urlsplit(plan.origin)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nX-Chaos-Slow: {'s' * 200}\r\n\r\n"
    ).encode()
    try:
        with gevent.Timeout(timeout, TimeoutError("timeout")):
            sock = gevent.socket.create_connection((host, port))
            try:
                size = max(1, len(head) // SLOW_PIECES + 1)
                for i in range(0, len(head), size):
                    sock.sendall(head[i : i + size])
                    gevent.sleep(SLOW_SECONDS / SLOW_PIECES)  # the pause is what a slow-loris client is
                sock.sendall(body)
                line = sock.makefile("rb").readline()
            finally:
                sock.close()
    except (OSError, TimeoutError) as error:
        return None, f"{type(error).__name__}: {error}"[:200]
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None, "server disconnected" if not line else f"malformed answer: {line[:80]!r}"
    return int(parts[1]), ""


def _record_malformed(plan: _Plan, meta: tuple, response: Any, exception: BaseException | None) -> None:
    """A malformed request's record, its outcome as the native worker gives it (a 4xx is ``fail``)."""
    ident, kind, scheduled, start = meta
    plan.open.pop(ident, None)
    status = getattr(response, "status_code", 0) or None
    if status is None:
        outcome = FAIL if isinstance(exception, ConnectionRefusedError) else INFO
        error = f"{type(exception).__name__}: {exception}"[:200]
    else:
        outcome, error = (OK if status < 300 else FAIL if status < 500 else INFO), ""
    plan.rows.append((MALFORMED, kind, scheduled, start, monotonic(), status, error, outcome, ""))


@events.request.add_listener
def _record(response: Any, exception: BaseException | None, context: dict, **_: Any) -> None:
    """Every request of the load, judged as the native worker judges it, into this worker's records."""
    plan = _plan
    meta = context.get("chaos") if context else None
    malformed = context.get("chaos_malformed") if context else None
    if plan is not None and malformed is not None:
        _record_malformed(plan, malformed, response, exception)
        return
    if plan is None or meta is None:
        return
    end = monotonic()
    ident, name, op, key, scheduled, start, body, expected, generation = meta
    plan.open.pop(ident, None)
    status = getattr(response, "status_code", 0) or None
    if status is None:
        error = exception if exception is not None else getattr(response, "error", None)
        refused = isinstance(error, ConnectionRefusedError)
        text = "connection refused" if refused else f"{type(error).__name__}: {error}"[:200]
        plan.rows.append((op, key, scheduled, start, end, None, text, FAIL if refused else INFO, body))
        return
    content = getattr(response, "content", None) or b""
    outcome = plan.mix.judge(status, content, op, expected, body, key, plan.operations[name])
    if status == 401:
        _refresh(generation)
    error = "wrong content" if outcome == FAIL and status < 300 else ""
    plan.rows.append((op, key, scheduled, start, end, status, error, outcome, body))


# -- messages from and to the master -------------------------------------------------------------


def _ship(final: bool = False) -> None:
    """Send the records made since the last batch, with the counters the master's progress line needs."""
    plan, runner = _plan, _runner
    assert plan is not None and runner is not None
    rows, plan.rows = plan.rows, []
    lags, plan.lags = plan.lags, []
    runner.send_message(
        "chaos_final" if final else "chaos_rows",
        {
            "index": plan.index,
            "rows": rows,
            "lags": lags,
            "sent": plan.sent,
            "in_flight": len(plan.open),
            "oldest_open": min(plan.open.values(), default=None),
            "tokens": plan.tokens,
        },
    )


def _shipper() -> None:
    plan = _plan
    assert plan is not None
    while not plan.stopping.wait(_SHIP_INTERVAL):
        _ship()


def _drain_and_finish() -> None:
    """Stop launching, wait up to ``request_timeout`` + 1 s for the open requests, send the rest."""
    plan = _plan
    assert plan is not None
    deadline = monotonic() + plan.spec["request_timeout"] + 1.0
    while plan.open and monotonic() < deadline:
        gevent.sleep(0.01)  # a poll with a deadline: request events have no "all done" signal
    _ship(final=True)


def _on_spec(environment: Any, msg: Any, **_: Any) -> None:
    global _plan
    plan = _Plan(msg.data)
    _plan = plan
    ChaosUser.host = plan.origin
    ChaosUser.network_timeout = ChaosUser.connection_timeout = float(plan.spec["request_timeout"])

    def login() -> None:
        error = ""
        try:
            _set_token(_fetch_token(None) if plan.workload.auth is not None else None)
            plan.tokens += plan.workload.auth is not None
        except AuthError as exc:
            error = str(exc)
        assert _runner is not None
        _runner.send_message("chaos_ready", {"index": plan.index, "error": error, "boot_id": boot_id()})

    gevent.spawn(login)


def _on_ping(environment: Any, msg: Any, **_: Any) -> None:
    assert _runner is not None
    _runner.send_message("chaos_pong", {**msg.data, "worker": monotonic(), "boot_id": boot_id()})


def _on_go(environment: Any, msg: Any, **_: Any) -> None:
    plan = _plan
    assert plan is not None
    plan.t0 = float(msg.data["t0"]) + plan.offset
    plan.go.set()
    gevent.spawn(_shipper)
    if plan.spec["model"] == "open":
        gevent.spawn(_dispatch)


def _on_stop(environment: Any, msg: Any, **_: Any) -> None:
    plan = _plan
    if plan is None or plan.stopping.is_set():
        return
    plan.stopping.set()
    for slot in plan.idle:  # free users waiting for a slot get none: they wait to be killed
        slot.set(float("inf"))
    plan.idle.clear()
    gevent.spawn(_drain_and_finish)


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    global _runner
    if not isinstance(environment.runner, WorkerRunner):
        return
    _runner = environment.runner
    for name, listener in (
        ("chaos_spec", _on_spec),
        ("chaos_ping", _on_ping),
        ("chaos_go", _on_go),
        ("chaos_stop", _on_stop),
    ):
        environment.runner.register_message(name, listener)
    # Locust's worker connects before this hook runs: the master talks to it only after this hello
    gevent.spawn(environment.runner.send_message, "chaos_hello", {"boot_id": boot_id()})
