"""A small HTTP/1.1 client on asyncio protocols, for the load worker.

The load worker shares two cores with the service it loads, so every
microsecond it spends per request is taken from the service and shows up as
schedule lag. aiohttp makes a task, a few futures, a timeout context and a
response object per request; this client makes none: :meth:`HttpClient.send`
writes the request on an idle keep-alive connection at once and calls back
with the answer from the protocol's ``data_received``. One timer per request
bounds it. It speaks only what the load needs: one origin, keep-alive,
``Content-Length``, chunked or read-to-close bodies, no redirects, no cookies.

Every request ends in exactly one call of its callback with an :class:`Answer`:
a status and body, or an error and whether the request was sent (``sent``
False: refused or no connection, so nothing reached the service).

Answers are parsed by ``httptools`` (llhttp, the C parser uvicorn uses), not by
hand as before: framing, chunk sizes, trailers, keep-alive rules and malformed
input are a well-kept parser's, and it costs less per answer. Measured side by side on the
shared 2-core machine (2026-12-01), the client's work for one answer (start,
parse, finish; 20,000 answers, best of 15, interleaved in one process)::

    answer              hand parser   httptools    h11 (pure Python, its request included)
    uvicorn JSON, 61 B  7.2-8.1 us    5.2-5.7 us   89 us
    aiohttp text, 2 B   4.6-6.8 us    3.2-3.9 us   75 us
    chunked, 2 chunks   6.9-7.4 us    2.9-3.1 us   78 us

``bench/loadgen_vs_locust.py --generators locust`` (2 rounds x 5 s, load average
2-7), suite / Locust requests per CPU-second, hand parser vs httptools in
alternate runs: users open 2.23-2.50 vs 2.12-2.46, users closed 3.02-3.12 vs
2.61-2.99, hello open 1.23-1.38 vs 1.35-1.51, hello closed 5.46-5.53 vs
5.70-5.81; the worst row of a run 1.23-1.38 vs 1.35-1.51. The users rows lean
to the hand parser, the hello rows to httptools, each by less than the spread
between runs of one parser (users closed, hand parser: 2.42-3.12 over three full
runs): the worker stays at least as far ahead of Locust. h11 would cost 10-20
times what the hand parser did.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

__all__ = ["Answer", "HttpClient"]

_MAX_HEAD = 64 * 1024  # bytes of status line and headers before the answer is called malformed
_FRAMING = (b"content-length", b"transfer-encoding")  # headers that say where a body ends


@dataclass(frozen=True, slots=True)
class Answer:
    """How one request ended: ``status`` and ``body``, or ``error`` (``sent`` False when nothing was sent)."""

    status: int | None
    body: bytes = b""
    error: str = ""
    sent: bool = True


Callback = Callable[[Answer], None]


class _Call:
    """One request on its way: the bytes to send, the callback, the timer that bounds it."""

    __slots__ = ("data", "head_only", "callback", "timer", "conn", "done")

    def __init__(self, data: bytes, head_only: bool, callback: Callback) -> None:
        self.data = data
        self.head_only = head_only
        self.callback = callback
        self.timer: asyncio.TimerHandle | None = None
        self.conn: _Connection | None = None
        self.done = False


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time, the answer parsed as it arrives.

    The bytes go to an ``httptools`` (llhttp) response parser; its callbacks only note what they saw,
    and :meth:`data_received` ends the request once the parser returns.
    """

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.call: _Call | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.parser_stale = False
        self._reset_parser()

    def _reset_parser(self) -> None:
        self.status: int | None = None  # set once the head (status line and headers) is complete
        self.framed = False  # Content-Length or Transfer-Encoding given: else the body ends with the connection
        self.keep_alive = True
        self.parts: list[bytes] = []
        self.answer: Answer | None = None
        self.head_bytes = 0
        self.got_bytes = False

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.call is None:  # bytes nobody asked for: the connection is not to be trusted
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # 101: the load never asks to switch protocols
            self._finish(Answer(None, error="malformed answer: an upgrade nobody asked for"), reuse=False)
            return
        except httptools.HttpParserError as exc:
            if self.answer is None:
                what = "bad status line: " if self.parser.get_status_code() == 0 else ""
                self._finish(Answer(None, error=f"malformed answer: {what}{exc}"[:200]), reuse=False)
                return
            self.keep_alive = False  # bytes after the answer: answer it, but do not reuse the connection
        if self.answer is None and self.status is None:
            self.head_bytes += len(data)
            if self.head_bytes > _MAX_HEAD:
                self._finish(Answer(None, error="malformed answer: header section too long"), reuse=False)
            return
        if self.answer is not None:
            self._finish(self.answer, reuse=self.keep_alive)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        call = self.call
        if call is None:
            return
        if self.status is not None and not self.framed and exc is None:
            self._finish(Answer(self.status, b"".join(self.parts)), reuse=False)  # a body that ends with the connection
        elif self.got_bytes:
            self._finish(Answer(None, error="incomplete answer"), reuse=False)
        elif exc is None:
            self._finish(Answer(None, error="server disconnected"), reuse=False)
        else:
            self._finish(Answer(None, error=f"connection error: {exc}"[:200]), reuse=False)

    # -- the parser's callbacks --------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.answer is not None:  # more bytes after the answer: the connection is not to be trusted
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.framed and name.lower() in _FRAMING:
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 or self.answer is not None:  # an interim answer (the real one follows), or junk
            self.framed = False
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        if self.call is not None and self.call.head_only:  # llhttp cannot be told the answer has no body...
            self.answer = Answer(status, b"")
            self.parser_stale = True  # ...so it would read the next answer as this one's: a new parser then
        elif status in (204, 304):
            self.framed = True

    def on_body(self, body: bytes) -> None:
        if self.status is not None and self.answer is None:
            self.parts.append(body)

    def on_message_complete(self) -> None:
        if self.status is not None and self.answer is None:
            self.answer = Answer(self.status, b"".join(self.parts))

    # -- requests ----------------------------------------------------------------------
    def start(self, call: _Call) -> None:
        self.call = call
        call.conn = self
        self._reset_parser()
        if self.parser_stale:
            self.parser, self.parser_stale = httptools.HttpResponseParser(self), False
        self.transport.write(call.data)  # type: ignore[union-attr]

    def _finish(self, answer: Answer, reuse: bool) -> None:
        call, self.call = self.call, None
        if not reuse:
            self.close()
        if call is not None:
            self.client._complete(call, answer, self if reuse and not self.closed else None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client._forget(self)
            if self.transport is not None:
                self.transport.close()


class HttpClient:
    """Requests to one origin over keep-alive connections (one per open request), each bounded by ``timeout`` s.

    :meth:`send` never blocks and never raises for a network failure: the
    callback gets every outcome. How many requests may be open at once is the
    caller's to bound. Use it from the loop's thread only.
    """

    def __init__(self, base_url: str, *, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        default = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = (host if default else f"{host}:{self.port}").encode()
        self.timeout = timeout
        #: header lines sent with every request, each ending in CRLF (the workload's headers and token);
        #: the caller may replace it between requests, e.g. with a fresh token
        self.extra_headers = b""
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()
        self._loop = asyncio.get_running_loop()

    def send(
        self, method: str, path: str, body: bytes | None, callback: Callback, content_type: str = "application/json"
    ) -> None:
        """Send one request now (on an idle connection, or a new one); ``callback(answer)`` once it ends."""
        verb = method.upper().encode()
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (verb, path.encode(), self._host_header, self.extra_headers)
        if body is not None:
            head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type.encode(), len(body))
        call = _Call(head + b"\r\n" + (body or b""), verb == b"HEAD", callback)
        call.timer = self._loop.call_later(self.timeout, self._expire, call)
        while self._idle:
            conn = self._idle.pop()  # the most recently used: warm, least likely closed by the server's idle timeout
            if not conn.closed:
                conn.start(call)
                return
        self._loop.create_task(self._connect(call))

    async def _connect(self, call: _Call) -> None:
        try:
            _, conn = await self._loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl)
        except asyncio.CancelledError:
            self._complete(call, Answer(None, error="connect timeout", sent=False), None)
            raise
        except OSError as exc:
            refused = exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError)
            reason = "connection refused" if refused else f"could not connect: {exc}"[:200]
            self._complete(call, Answer(None, error=reason, sent=False), None)
            return
        self._all.add(conn)
        if call.done:  # timed out while connecting: keep the connection for the next request
            self._idle.append(conn)
            return
        conn.start(call)

    def _expire(self, call: _Call) -> None:
        conn = call.conn
        if conn is None:  # still connecting: nothing was sent
            self._complete(call, Answer(None, error="connect timeout", sent=False), None)
            return
        conn.call = None
        conn.close()  # the answer may still come: this connection cannot be reused
        self._complete(call, Answer(None, error="timeout"), None)

    def _complete(self, call: _Call, answer: Answer, idle: _Connection | None) -> None:
        if idle is not None:
            self._idle.append(idle)
        if call.done:
            return
        call.done = True
        if call.timer is not None:
            call.timer.cancel()
        call.callback(answer)

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):  # not idle: it was in use
            self._idle.remove(conn)

    def close(self) -> None:
        """Close every connection; open requests end with their callbacks."""
        for conn in list(self._all):
            conn.close()
