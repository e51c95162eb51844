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
"""
from __future__ import annotations

import asyncio
import errno
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Answer", "HttpClient"]

_MAX_HEAD = 64 * 1024  # bytes of status line and headers before the answer is called malformed


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
    """One keep-alive connection: at most one request at a time, the answer parsed as it arrives."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.call: _Call | None = None
        self.closed = False
        self._reset_parser()

    def _reset_parser(self) -> None:
        self.buffer = bytearray()
        self.status: int | None = None
        self.length: int | None = None  # body bytes expected; None: chunked or to close
        self.chunked = False
        self.keep_alive = True
        self.body = bytearray()
        self.got_bytes = False

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.call is None:  # bytes nobody asked for: the connection is not to be trusted
            self.close()
            return
        self.got_bytes = True
        self.buffer += data
        try:
            answer = self._parse()
        except ValueError as exc:
            self._finish(Answer(None, error=f"malformed answer: {exc}"[:200]), reuse=False)
            return
        if answer is not None:
            self._finish(answer, reuse=self.keep_alive)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        call = self.call
        if call is None:
            return
        if self.status is not None and self.length is None and not self.chunked and exc is None:
            self.body += self.buffer  # a body that ends with the connection
            self._finish(Answer(self.status, bytes(self.body)), reuse=False)
        elif self.got_bytes:
            self._finish(Answer(None, error="incomplete answer"), reuse=False)
        elif exc is None:
            self._finish(Answer(None, error="server disconnected"), reuse=False)
        else:
            self._finish(Answer(None, error=f"connection error: {exc}"[:200]), reuse=False)

    # -- parsing -----------------------------------------------------------------------
    def _parse(self) -> Answer | None:
        """The answer once complete, else None (more bytes needed)."""
        if self.status is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    raise ValueError("header section too long")
                return None
            self._head(bytes(self.buffer[:end]))
            del self.buffer[:end + 4]
            if self.status is not None and 100 <= self.status < 200:  # an interim answer: the real one follows
                self.status = None
                return self._parse()
        if self.chunked:
            return self._chunks()
        if self.length is None:
            return None  # read to close
        if len(self.buffer) < self.length:
            return None
        body = bytes(self.buffer[:self.length])
        return Answer(self.status, body)

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"bad status line {lines[0][:80]!r}")
        self.status = int(parts[1])
        self.keep_alive = parts[0] != b"HTTP/1.0"
        self.length = None
        self.chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self.length = int(value.strip())
            elif name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif name == b"connection":
                token = value.strip().lower()
                self.keep_alive = token != b"close" and (self.keep_alive or token == b"keep-alive")
        if self.chunked:
            self.length = None
        elif self.status in (204, 304) or (self.call is not None and self.call.head_only):
            self.length = 0

    def _chunks(self) -> Answer | None:
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return None
            size = int(bytes(self.buffer[:end]).split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                if self.buffer.find(b"\r\n\r\n", end) < 0:  # the trailer section ends with an empty line
                    return None
                return Answer(self.status, bytes(self.body))
            if len(self.buffer) < end + 2 + size + 2:
                return None
            self.body += self.buffer[end + 2:end + 2 + size]
            del self.buffer[:end + 2 + size + 2]

    # -- requests ----------------------------------------------------------------------
    def start(self, call: _Call) -> None:
        self.call = call
        call.conn = self
        self._reset_parser()
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
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()
        self._loop = asyncio.get_running_loop()

    def send(self, method: str, path: str, body: bytes | None, callback: Callback,
             content_type: str = "application/json") -> None:
        """Send one request now (on an idle connection, or a new one); ``callback(answer)`` once it ends."""
        verb = method.upper().encode()
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (verb, path.encode(), self._host_header)
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
            _, conn = await self._loop.create_connection(lambda: _Connection(self), self.host, self.port,
                                                         ssl=self.ssl)
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
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        """Close every connection; open requests end with their callbacks."""
        for conn in list(self._all):
            conn.close()
