"""One direction of a proxied connection: its bytes held, paced or cut by the toxics of its stream.

A :class:`Pipe` reads from one socket (:class:`~support.proxy.relay.Side`) and
writes to the other. With no data toxic on its stream and nothing queued, bytes
go from one transport to the other in the protocol callback: no queue, no task,
no per-byte work. Otherwise each chunk waits in a queue until every toxic of
the stream, in order, lets it pass (:meth:`Pipe._hold`); removing a toxic takes
effect at once on the chunks it held. Back-pressure both ways: a full queue
pauses reading from the source, a full destination pauses the queue.

On a link of ``protocol = "http"`` the client-to-server pipe also cuts its bytes
into requests (:class:`~support.proxy.http_mode.RequestFramer`) and lets the HTTP
toxics decide each one (:meth:`Pipe._feed_http`): passed as above, held
(delay), dropped and answered in the service's place (replace), or the
connection closed (abort).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from support.proxy.http_mode import PASS, RequestFramer, decide, reply_bytes
from support.proxy.toxics import Toxic

if TYPE_CHECKING:
    from support.proxy.relay import Connection, Side

__all__ = ["Pipe", "Chunk", "QUEUE_HIGH"]

#: bytes a stream may hold in its toxic queue before reading from its source pauses
QUEUE_HIGH = 1 << 20
#: bandwidth toxic: pace in slices of this many seconds of data, so short transfers are paced too
_BANDWIDTH_SLICE = 0.02
#: bandwidth toxic: lateness (s) made up for, so a busy event loop keeps the configured rate on average
_BANDWIDTH_CATCH_UP = 0.05


@dataclass
class Chunk:
    """Bytes read at ``arrival`` (loop time, s), with what each toxic (by uid) decided about them."""

    data: bytes | None  # None: the end of the stream (EOF)
    arrival: float
    passed: set[int] = field(default_factory=set)
    release: dict[int, float] = field(default_factory=dict)
    close_after: bool = False
    not_before: float = 0.0  # an HTTP request held until then (loop time) while the toxic ``held_by`` lasts
    held_by: int = 0
    reply: bytes | None = None  # an answer to write back to the client in the service's place
    abort: bool = False  # the connection is closed when this chunk is reached


class Pipe:
    """One direction of a connection: from ``src`` to ``dst``, through the toxics of ``stream``."""

    def __init__(self, conn: Connection, stream: str, src: Side, dst: Side) -> None:
        self.conn = conn
        self.stream = stream
        self.src = src
        self.dst = dst
        src.reading_out = self
        dst.writing_in = self
        self.queue: deque[Chunk] = deque()
        self.queued = 0
        self.dst_full = False
        self.done = False  # EOF delivered to dst (or dst gone)
        self.task: asyncio.Task | None = None
        self._waker: asyncio.Future | None = None
        self._bandwidth_next: dict[int, float] = {}
        self._counts: dict[int, int] = {}
        http = stream == "upstream" and conn.proxy.protocol == "http"
        self.framer: RequestFramer | None = RequestFramer() if http else None
        self.aborted = False  # an http_abort met a request: nothing more is forwarded

    @property
    def blocked(self) -> bool:
        return self.dst_full or self.queued >= QUEUE_HIGH

    def feed(self, data: bytes) -> None:
        if self.framer is not None:
            self._feed_http(data)
            return
        self._feed_bytes(data)

    def _feed_bytes(self, data: bytes) -> None:
        if (
            not self.queue
            and self.task is None
            and self.conn.established
            and not self.conn.has_data_toxics(self.stream)
        ):
            self.dst.transport.write(data)  # type: ignore[union-attr]  # the no-toxic path
            return
        self.queue.append(Chunk(data, self.conn.loop.time()))
        self.queued += len(data)
        if self.queued >= QUEUE_HIGH:
            self.src.update_reading()
        self._kick()

    def _feed_http(self, data: bytes) -> None:
        """Each request's bytes as its HTTP toxic decided when its request line came (see the module docstring)."""
        assert self.framer is not None
        for request, piece, last in self.framer.feed(data):
            if self.aborted:
                return
            action = PASS
            if request is not None:
                if request.action is None:
                    request.action = decide(list(self.conn.proxy.toxics.values()), request)
                    request.release = self.conn.loop.time() + request.action.delay
                action = request.action
            if action.kind == "pass":
                if piece:
                    self._feed_bytes(piece)
            elif action.kind == "delay":
                assert request is not None and action.toxic is not None
                chunk = Chunk(piece, self.conn.loop.time(), not_before=request.release, held_by=action.toxic.uid)
                self._enqueue(chunk)
            elif action.kind == "abort":
                self.aborted = True
                self._enqueue(Chunk(b"", self.conn.loop.time(), abort=True))
            elif last:  # replace: the request is dropped; its answer goes back once it is complete
                assert request is not None and action.toxic is not None
                reply = reply_bytes(action.toxic, request)
                self._enqueue(Chunk(b"", self.conn.loop.time(), reply=reply, close_after=request.close))

    def _enqueue(self, chunk: Chunk) -> None:
        self.queue.append(chunk)
        self.queued += len(chunk.data or b"")
        if self.queued >= QUEUE_HIGH:
            self.src.update_reading()
        self._kick()

    def feed_eof(self) -> None:
        if self.done or (self.queue and self.queue[-1].data is None):
            return
        if not self.queue and self.task is None and self.conn.established and not self.conn.toxics(self.stream):
            self._deliver_eof()
            return
        self.queue.append(Chunk(None, self.conn.loop.time()))
        self._kick()

    def set_dst_full(self, full: bool) -> None:
        self.dst_full = full
        self.src.update_reading()
        if not full:
            self.wake()

    def wake(self) -> None:
        """Re-evaluate a held chunk now (toxics changed, the socket drained, the connection closed)."""
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(None)

    def discard(self) -> None:
        self.queue.clear()
        self.queued = 0
        self.done = True
        self.wake()

    def _kick(self) -> None:
        if self.task is None and not self.conn.closed:
            self.task = self.conn.loop.create_task(self._run())

    async def _sleep(self, seconds: float) -> None:
        loop = self.conn.loop
        self._waker = loop.create_future()
        handle = loop.call_later(seconds, self.wake) if math.isfinite(seconds) else None
        try:
            await self._waker
        finally:
            self._waker = None
            if handle is not None:
                handle.cancel()

    async def _run(self) -> None:
        try:
            while self.queue and not self.conn.closed:
                chunk = self.queue[0]
                if not await self._through_toxics(chunk):
                    return
                self.queue.popleft()
                if chunk.data is None:
                    self._deliver_eof()
                    return
                self.queued -= len(chunk.data)
                if self.queued < QUEUE_HIGH:
                    self.src.update_reading()
                if chunk.abort:
                    self.conn.close("graceful")
                    return
                if chunk.reply is not None and self.src.transport is not None and not self.src.transport.is_closing():
                    self.src.transport.write(chunk.reply)
                if chunk.data and not self.dst.transport.is_closing():  # type: ignore[union-attr]
                    self.dst.transport.write(chunk.data)  # type: ignore[union-attr]
                if chunk.close_after:
                    self.conn.close("graceful")
                    return
                while self.dst_full and not self.conn.closed:
                    await self._sleep(math.inf)
        finally:
            self.task = None

    async def _through_toxics(self, chunk: Chunk) -> bool:
        """Wait until every toxic of the stream lets ``chunk`` pass, in toxic order; False once closed."""
        while True:
            if self.conn.closed or self.done:
                return False
            if not self.conn.established:  # data read before the upstream answered (uvloop reads at once)
                await self._sleep(math.inf)
                continue
            now = self.conn.loop.time()
            if chunk.held_by and now < chunk.not_before and self._held_by_live(chunk.held_by):
                await self._sleep(chunk.not_before - now)
                continue
            wait = 0.0
            for toxic in self.conn.toxics(self.stream):
                if toxic.uid in chunk.passed:
                    continue
                wait = self._hold(toxic, chunk, now)
                if wait > 0:
                    break
                chunk.passed.add(toxic.uid)
            else:
                return True
            await self._sleep(wait)

    def _held_by_live(self, uid: int) -> bool:
        return any(toxic.uid == uid for toxic in self.conn.proxy.toxics.values())

    def _hold(self, toxic: Toxic, chunk: Chunk, now: float) -> float:
        """Seconds ``toxic`` still holds ``chunk`` (0: it passes; inf: until the toxic changes)."""
        kind, attrs, uid = toxic.type, toxic.attributes, toxic.uid
        if kind == "timeout":
            return math.inf
        if chunk.data is None:
            if kind == "slow_close":
                release = chunk.release.setdefault(uid, now + attrs["delay"] / 1000.0)
                return release - now
            return 0.0
        if kind == "latency":
            if uid not in chunk.release:
                jitter = attrs["jitter"]
                delay = attrs["latency"] + (random.uniform(-jitter, jitter) if jitter else 0.0)
                chunk.release[uid] = chunk.arrival + max(0.0, delay) / 1000.0
            return chunk.release[uid] - now
        if kind == "bandwidth":
            if uid not in chunk.release:
                per_second = attrs["rate"] * 1000.0
                slice_bytes = max(1, int(per_second * _BANDWIDTH_SLICE))
                if len(chunk.data) > slice_bytes:
                    rest = Chunk(chunk.data[slice_bytes:], chunk.arrival, set(chunk.passed), dict(chunk.release))
                    chunk.data = chunk.data[:slice_bytes]
                    self.queue.insert(1, rest)
                # a late wake-up does not slow the stream down: the schedule continues where it was, unless
                # the stream sat idle (then it starts afresh, with no saved-up burst)
                scheduled = self._bandwidth_next.get(uid, now)
                start = scheduled if now - scheduled < _BANDWIDTH_CATCH_UP else max(now, scheduled)
                chunk.release[uid] = self._bandwidth_next[uid] = start + len(chunk.data) / per_second
            return chunk.release[uid] - now
        if kind == "limit_data":
            count = self._counts.get(uid, 0)
            left = attrs["bytes"] - count
            if len(chunk.data) >= left:
                self.queued -= len(chunk.data) - max(0, left)
                chunk.data = chunk.data[: max(0, left)]
                chunk.close_after = True
            self._counts[uid] = count + len(chunk.data)
        return 0.0

    def _deliver_eof(self) -> None:
        self.done = True
        transport = self.dst.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        self.conn.pipe_done()
