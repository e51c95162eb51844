"""The load worker: ``python -m support.load.worker [spec.json]`` (spec as one JSON line on stdin otherwise).

It sends the load a :class:`support.load.spec.LoadSpec` describes and records every
request as a :class:`support.load.history.Request`, sent with
:class:`support.load.client.HttpClient`. The open model sends request ``i`` at
``t0 + i / rate`` whatever the earlier ones are doing,
so a slow or dead service shows up as failures and latency, not as a pause in
the schedule (no coordinated omission); the lag between scheduled and actual
start is recorded so a worker that could not keep up is visible.

Outcomes: 2xx ``ok``; 3xx/4xx ``fail``; a read answered 200 with other content
``fail`` ("wrong content"); no connection (refused, connect timeout: nothing
was sent) ``fail``; past ``max_in_flight`` ``fail`` ("client overloaded");
5xx, timeout after connecting, reset or close after sending ``info``.

The workload (:class:`support.stack.workload.Workload`) decides each request: an
operation drawn by weight, under ``base_path``, with the static headers and the
auth token. A write is recorded as ``write`` with its key; a read-back of an
acknowledged write and a plain operation as ``read``. With an ``auth``, the
token is fetched before the schedule starts (a worker that cannot get one exits
before it is ready, with the reason) and again after a 401, which is recorded
like any other answer; requests sent while the new token is on its way carry
the old one.

Protocol. stdin lines: ``stop`` (or end of file, or SIGTERM/SIGINT) stops it;
``watch <t> [<min_successes> <min_span>]`` starts lines ``{"watch": {"after",
"last_bad", "bad", "oks", "first_ok", "last_ok", "recovered", "oldest_open"}}``
every 0.1 s: the recovery rule (:class:`support.load.recovery.RecoveryRule`)
applied live to the completed requests that started at or after monotonic
``t``, and the launch of the oldest request still open. stdout: ``{"ready": true, "t0": ...}``
once the schedule starts, then about every ``progress_interval`` s
``{"t", "sent", "ok", "errors", "fail", "info", "rps", "in_flight",
"lag_p99_ms", "cpu_s"}``, and ``{"done": true, ...}`` after the
history (CSV, :func:`support.load.history.to_csv`) is written to ``output``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from support.load.client import Answer, HttpClient
from support.load.history import FAIL, INFO, OK, percentile
from support.load.malformed import MALFORMED, MalformedShare
from support.load.mix import Mix
from support.load.os_resources import allow_open_files, keep_schedule_first, own_cpu_seconds
from support.load.protocol import Tally
from support.load.spec import LoadSpec, LoadSpecError
from support.load.tokens import Tokens
from support.stack.auth import AuthError
from support.stack.workload import Workload

__all__ = ["Worker", "main"]


monotonic = time.monotonic
_WATCH_INTERVAL = 0.1  # seconds between live recovery figures once watched
#: The event loop's timers have millisecond resolution and fire up to that much early: a request due
#: within it is sent now rather than after a second wake-up (measurably more CPU per request at
#: 150/s). So a request may start up to 1 ms before its scheduled time; its lag is then negative.
TIMER_RESOLUTION = 0.001


class Worker:
    """One load run inside an asyncio loop; see the module docstring."""

    def __init__(self, spec: LoadSpec, output: Path) -> None:
        self.spec = spec
        self.output = output
        self.prefix = urlsplit(spec.base_url).path.rstrip("/")  # a base URL may carry a path
        self.rng = random.Random(spec.seed)
        #: the completed requests (plain tuples, see support.load.protocol), their counts, the live watch
        self.tally = Tally()
        self.workload = Workload.from_dict(spec.workload) if spec.workload else Workload()
        self.base = self.prefix + self.workload.base_path
        self.mix = Mix(self.workload, spec.write_fraction, spec.run_id, self.base, self.rng)
        self.malformed = (
            MalformedShare(
                spec.malformed_share,
                spec.malformed_after,
                self.workload,
                self.base,
                spec.run_id,
                random.Random(spec.seed),
            )
            if spec.malformed_share
            else None
        )
        self.tokens: Tokens | None = None  # the headers and auth token, once the client exists
        self.sent = 0
        # launch times of the requests still open: a request launched before the
        # run of successes and still open may yet fail and end the run
        self.open_starts: dict[int, float] = {}
        self._tokens = count()
        self.window_lags: list[float] = []
        self.stopping = asyncio.Event()
        self.drained = asyncio.Event()  # set when stopping and no request is open
        self.t0 = 0.0
        self.client: HttpClient | None = None
        self.priority = "normal"  # or "realtime": see support.load.os_resources.keep_schedule_first
        self._timer: asyncio.TimerHandle | None = None
        self._next = 0
        self._stdout_ok = True

    # -- output -------------------------------------------------------------
    def emit(self, message: dict[str, Any]) -> None:
        if not self._stdout_ok:
            return
        try:
            sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            # nobody reads us any more: the controller is gone, so stop and keep the history
            self._stdout_ok = False
            self.stopping.set()

    # -- one request -----------------------------------------------------------
    def request(self, scheduled: float, then: Callable[[], object] | None = None) -> None:
        """Send one request now; record it when it ends, then call ``then()`` if given."""
        start = monotonic()
        kind = self.malformed.draw(start - self.t0) if self.malformed is not None else None
        if kind is not None and len(self.open_starts) < self.spec.max_in_flight:
            self._malformed(kind, scheduled, start, then)
            return
        operation, op, key, body, method, path, (data, content_type), expected = self.mix.choose()
        if len(self.open_starts) >= self.spec.max_in_flight:
            self.record(op, key, scheduled, start, start, None, "client overloaded", FAIL, body)
            return
        token = next(self._tokens)
        self.open_starts[token] = start
        tokens = self.tokens
        generation = tokens.generation  # type: ignore[union-attr]

        def answered(answer: Answer) -> None:
            end = monotonic()
            del self.open_starts[token]
            if answer.status is None:
                # nothing sent (refused, no connection, over the client's bound): known not applied
                outcome: str = INFO if answer.sent else FAIL
                self.record(op, key, scheduled, start, end, None, answer.error, outcome, body)
            else:
                outcome = self.mix.judge(answer.status, answer.body, op, expected, body, key, operation)
                if answer.status == 401 and generation == tokens.generation:  # type: ignore[union-attr]
                    tokens.refresh()  # type: ignore[union-attr]
                error = "wrong content" if outcome is FAIL and answer.status < 300 else ""
                self.record(op, key, scheduled, start, end, answer.status, error, outcome, body)
            if self.stopping.is_set() and not self.open_starts:
                self.drained.set()
            if then is not None:
                then()

        assert self.client is not None
        self.client.send(method, path, data, answered, content_type)

    def _malformed(self, kind: str, scheduled: float, start: float, then: Callable[[], object] | None) -> None:
        """One request of the malformed share (:mod:`support.load.malformed`), recorded under its own op."""
        token = next(self._tokens)
        self.open_starts[token] = start

        def answered(answer: Answer) -> None:
            end = monotonic()
            del self.open_starts[token]
            if answer.status is None:
                outcome = INFO if answer.sent else FAIL
            else:
                outcome = OK if answer.status < 300 else FAIL if answer.status < 500 else INFO
            self.record(MALFORMED, kind, scheduled, start, end, answer.status, answer.error, outcome, "")
            if self.stopping.is_set() and not self.open_starts:
                self.drained.set()
            if then is not None:
                then()

        assert self.malformed is not None and self.client is not None
        self.malformed.send(self.client, kind, self.spec.request_timeout, answered)

    def record(
        self,
        op: str,
        key: str,
        scheduled: float,
        start: float,
        end: float,
        status: int | None,
        error: str,
        outcome: str,
        body: str,
    ) -> None:
        self.tally.add((op, key, scheduled, start, end, status, error, outcome, body))

    def launch(self, scheduled: float) -> None:
        """Start one request of the open model now (recorded as refused at once past ``max_in_flight``)."""
        self.sent += 1
        self.window_lags.append(monotonic() - scheduled)
        self.request(scheduled)

    # -- models ---------------------------------------------------------------
    def _tick(self) -> None:
        """Launch every request due by now, then arm the timer for the next one."""
        loop = asyncio.get_running_loop()
        end = self.t0 + self.spec.max_duration
        now = monotonic()
        while not self.stopping.is_set():
            scheduled = self.t0 + self._next / self.spec.rate
            if scheduled >= end:
                self.stopping.set()
                return
            if scheduled > now + TIMER_RESOLUTION:
                self._timer = loop.call_at(scheduled, self._tick)
                return
            self._next += 1
            self.launch(scheduled)
            now = monotonic()

    def user(self) -> None:
        """One closed-model user's next request, sent when its last one ended (after ``think_time``)."""
        if self.stopping.is_set() or monotonic() >= self.t0 + self.spec.max_duration:
            self.stopping.set()
            return
        self.sent += 1
        self.window_lags.append(0.0)
        loop = asyncio.get_running_loop()
        if self.spec.think_time:
            self.request(monotonic(), lambda: loop.call_later(self.spec.think_time, self.user))
        else:
            self.request(monotonic(), lambda: loop.call_soon(self.user))  # call_soon: no recursion

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as the load is stopping, False when the time is up."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def report(self) -> None:
        """The progress line every ``progress_interval`` s until the load stops."""
        last = monotonic()
        while not await self._stopped_within(self.spec.progress_interval):
            now = monotonic()
            lags, self.window_lags = self.window_lags, []
            message = {
                "t": round(now - self.t0, 3),
                "sent": self.sent,
                **self.tally.progress(now - last),
                "in_flight": len(self.open_starts),
                "lag_p99_ms": round((percentile(lags, 99) or 0.0) * 1000.0, 3),
                "cpu_s": round(own_cpu_seconds(), 3),
            }
            last = now
            self.emit(message)

    async def report_watch(self) -> None:
        """While watched, the live recovery figures every 0.1 s, so the controller sees recovery promptly."""
        while not await self._stopped_within(_WATCH_INTERVAL):
            if self.tally.watch is not None:
                figures = self.tally.watch.figures()
                figures["oldest_open"] = min(self.open_starts.values(), default=None)
                self.emit({"watch": figures})

    # -- control ----------------------------------------------------------------
    def command(self, line: str) -> None:
        """Handle one stdin line (called on the loop)."""
        if self.tally.command(line):
            self.stopping.set()

    async def _read_commands(self, reader: asyncio.StreamReader) -> None:
        """Forward stdin lines to :meth:`command`; end of file means stop."""
        while not self.stopping.is_set():
            line = await reader.readline()
            if not line:
                break
            self.command(line.decode("utf-8", "replace").strip() or "noop")
        self.stopping.set()

    async def run(self, stdin_fd: int) -> None:
        loop = asyncio.get_running_loop()
        # stdin read by the loop itself: a thread blocked in read() would hang interpreter shutdown
        stdin_reader = asyncio.StreamReader()
        reader: asyncio.StreamReader | None = stdin_reader
        try:
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stdin_reader), open(stdin_fd, "rb", 0, closefd=False)
            )
        except ValueError:  # stdin is a regular file: no commands, stop by signal or max_duration
            reader = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.client = HttpClient(self.spec.base_url, timeout=self.spec.request_timeout)
        self.tokens = Tokens(self.workload, self.client, self.base, self.spec.run_id, self.spec.request_timeout)
        await self.tokens.authenticate()
        commands = loop.create_task(self._read_commands(reader)) if reader else None
        gc.collect()
        gc.freeze()  # what exists now lives all run long: keep it out of every collection
        self.t0 = monotonic()
        self.emit(
            {
                "ready": True,
                "t0": self.t0,
                "model": self.spec.model,
                "run_id": self.spec.run_id,
                "priority": self.priority,
            }
        )
        reporter = loop.create_task(self.report())
        watch_reporter = loop.create_task(self.report_watch())
        if self.spec.model == "open":
            self._tick()
        else:
            for _ in range(self.spec.users):
                self.user()
        max_end = self.t0 + self.spec.max_duration
        try:
            await asyncio.wait_for(self.stopping.wait(), max(0.0, max_end - monotonic()))
        except TimeoutError:
            self.stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        # every request carries its own timeout, so the open ones end by themselves; the margin covers the loop
        if self.open_starts:
            try:
                await asyncio.wait_for(self.drained.wait(), self.spec.request_timeout + 1.0)
            except TimeoutError:
                pass
        self.client.close()
        await reporter
        await watch_reporter
        if commands:
            commands.cancel()


def _read_line(fd: int) -> bytes:
    """One line from ``fd``, read a byte at a time so nothing after it is consumed."""
    line = bytearray()
    while (byte := os.read(fd, 1)) and byte != b"\n":
        line += byte
    return bytes(line)


def _read_spec(argv: list[str], stdin_fd: int) -> tuple[LoadSpec, Path]:
    if argv:
        data = json.loads(Path(argv[0]).read_text())
    else:
        data = json.loads(_read_line(stdin_fd))
    if not isinstance(data, dict):
        raise LoadSpecError("load spec: expected a JSON object")
    output = Path(data.pop("output", None) or f"history-{data.get('run_id', 'load')}.csv")
    return LoadSpec.from_dict(data), output


def main(argv: list[str] | None = None) -> int:
    """Run one load from a spec file (first argument) or a JSON line on stdin; 0 once the history is written."""
    argv = sys.argv[1:] if argv is None else argv
    stdin_fd = sys.stdin.fileno()
    try:
        spec, output = _read_spec(argv, stdin_fd)
    except (OSError, ValueError, TypeError) as error:
        print(f"loadgen: {error}", file=sys.stderr)
        return 2
    allow_open_files(spec.max_in_flight + 64)  # a socket per open request, and a margin for the rest
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    worker = Worker(spec, output)
    worker.priority = keep_schedule_first(spec)
    try:
        runner(worker.run(stdin_fd))
    except AuthError as error:
        print(f"loadgen: no auth token, so no load: {error}", file=sys.stderr)
        return 2
    worker.emit(
        {
            **worker.tally.finish(output),
            "cpu_s": round(own_cpu_seconds(), 3),
            "sent": worker.sent,
            "tokens": worker.tokens.fetched if worker.tokens else 0,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
