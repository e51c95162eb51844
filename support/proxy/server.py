"""A TCP fault proxy for the links between services, in Toxiproxy's vocabulary.

No Toxiproxy server can be installed here, so this is a small asyncio one that
speaks a subset of its HTTP API (``GET /version``, ``/proxies``,
``/proxies/{name}``, ``/proxies/{name}/toxics[/{toxic}]``, ``POST /reset``).

A proxy listens on 127.0.0.1 (port 0 = a free port, kept for the proxy's whole
life, also while it is disabled) and forwards to an upstream on loopback.
``enabled=false`` is the whole link down: new connections are refused (the
port stays bound but does not listen) and existing ones are cut.

Toxics (``stream``: ``downstream`` = upstream->client, ``upstream`` =
client->upstream; ``toxicity``: the chance, rolled once per connection and
toxic, that the toxic applies to that connection):

- ``latency`` {latency ms, jitter ms}: each chunk is released ``latency`` +/- a
  uniform ``jitter`` after it arrived;
- ``bandwidth`` {rate KB/s, KB = 1000 bytes}: data paced at ``rate``;
- ``timeout`` {timeout ms}: data stops flowing; 0 = until the toxic is removed,
  > 0 = the connection is closed that long after the toxic met it. Unlike
  Toxiproxy, held data is not dropped: it flows again once the toxic is removed,
  like a partition that heals (TCP retransmits; a stream never loses bytes);
- ``reset_peer`` {timeout ms}: both sockets are reset (RST, ``SO_LINGER`` 0)
  ``timeout`` after the toxic met the connection;
- ``slow_close`` {delay ms}: the close (EOF) of that stream is delayed;
- ``limit_data`` {bytes}: the connection is closed once that many bytes of the
  stream passed.

Removing a toxic takes effect at once on existing connections too. With no
toxic on a stream, bytes go from one transport to the other in the protocol
callback: no queue, no task, no per-byte work.

Run it as a process: ``python -m support.proxy.server --control 127.0.0.1:0`` prints
one JSON line ``{"ready": true, "control_url": ..., "port": ..., "pid": ...}``.
In-process: ``server = FaultProxyServer(); await server.start(); ...; await server.stop()``.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import math
import os
import random
import signal
import socket
import struct
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web

__all__ = ["FaultProxyServer", "Proxy", "Toxic", "make_toxic", "ProxyApiError", "TOXIC_ATTRIBUTES", "STREAMS",
           "VERSION", "main"]

VERSION = "chaos-suite-proxy 1.0 (toxiproxy API subset)"
LOOPBACK = "127.0.0.1"
STREAMS = ("downstream", "upstream")
#: each toxic type and its attributes with their defaults (ms, KB/s or bytes, as Toxiproxy)
TOXIC_ATTRIBUTES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slow_close": {"delay": 0},
    "limit_data": {"bytes": 0},
}
#: toxics that act on the bytes themselves; the others act on the connection or its close
_DATA_TOXICS = frozenset({"latency", "bandwidth", "timeout", "limit_data"})
#: bytes a stream may hold in its toxic queue before reading from its source pauses
_QUEUE_HIGH = 1 << 20
#: asyncio write-buffer high-water mark per socket; above it the other socket stops being read
_WRITE_HIGH = 1 << 20
#: bandwidth toxic: pace in slices of this many seconds of data, so short transfers are paced too
_BANDWIDTH_SLICE = 0.02
#: bandwidth toxic: lateness (s) made up for, so a busy event loop keeps the configured rate on average
_BANDWIDTH_CATCH_UP = 0.05
_CONNECT_TIMEOUT = 5.0
_uids = itertools.count(1)


class ProxyApiError(Exception):
    """A request the proxy refuses; ``status`` is the HTTP status the control API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- toxics -------------------------------------------------------------------

@dataclass(frozen=True)
class Toxic:
    """One toxic as configured; ``uid`` changes on every update so per-connection state restarts."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]
    uid: int = field(default_factory=lambda: next(_uids), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream, "toxicity": self.toxicity,
                "attributes": dict(self.attributes)}


def make_toxic(data: dict[str, Any], base: Toxic | None = None) -> Toxic:
    """A validated :class:`Toxic` from its JSON form; with ``base``, an update of that toxic."""
    if not isinstance(data, dict):
        raise ProxyApiError(400, "a toxic is a JSON object")
    kind = data.get("type", base.type if base else None)
    if kind not in TOXIC_ATTRIBUTES:
        raise ProxyApiError(400, f"unknown toxic type {kind!r}; valid types: {', '.join(TOXIC_ATTRIBUTES)}")
    if base is not None and kind != base.type:
        raise ProxyApiError(400, f"toxic {base.name!r} is a {base.type} toxic; its type cannot change")
    stream = data.get("stream", base.stream if base else "downstream")
    if stream not in STREAMS:
        raise ProxyApiError(400, f"unknown stream {stream!r}; valid streams: {', '.join(STREAMS)}")
    name = data.get("name") or (base.name if base else f"{kind}_{stream}")
    if not isinstance(name, str) or "/" in name:
        raise ProxyApiError(400, f"bad toxic name {name!r}")
    toxicity = data.get("toxicity", base.toxicity if base else 1.0)
    if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)) or not 0.0 <= toxicity <= 1.0:
        raise ProxyApiError(400, f"toxicity must be a number from 0 to 1, not {toxicity!r}")
    attributes = dict(base.attributes) if base else dict(TOXIC_ATTRIBUTES[kind])
    given = data.get("attributes") or {}
    if not isinstance(given, dict):
        raise ProxyApiError(400, "attributes is a JSON object")
    for key, value in given.items():
        if key not in TOXIC_ATTRIBUTES[kind]:
            raise ProxyApiError(400, f"unknown attribute {key!r} for a {kind} toxic; valid attributes: "
                                     f"{', '.join(TOXIC_ATTRIBUTES[kind])}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
            raise ProxyApiError(400, f"{kind} attribute {key} must be a whole number >= 0, not {value!r}")
        attributes[key] = int(value)
    if kind == "bandwidth" and attributes["rate"] <= 0:
        raise ProxyApiError(400, "bandwidth rate must be > 0 KB/s (to stop data altogether use a timeout toxic)")
    return Toxic(name, kind, stream, float(toxicity), attributes)


# -- one proxied connection ---------------------------------------------------

class _Side(asyncio.Protocol):
    """One socket of a proxied connection: the client's or the upstream's."""

    def __init__(self, conn: _Connection, role: str) -> None:
        self.conn = conn
        self.role = role
        self.transport: asyncio.Transport | None = None
        self.reading_out: _Pipe | None = None  # the pipe that reads from this socket
        self.writing_in: _Pipe | None = None  # the pipe that writes to this socket
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        self.conn.side_made(self)

    def data_received(self, data: bytes) -> None:
        self.reading_out.feed(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.reading_out.feed_eof()  # type: ignore[union-attr]
        return True  # keep the socket for the other direction (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.conn.side_lost(self, exc)

    def pause_writing(self) -> None:
        self.writing_in.set_dst_full(True)  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.writing_in.set_dst_full(False)  # type: ignore[union-attr]

    def update_reading(self) -> None:
        """Read from this socket only while the connection is up and the pipe it feeds has room."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pipe = self.reading_out
        want = self.conn.established and not self.conn.closed and pipe is not None and not pipe.blocked
        if want != transport.is_reading():
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()


@dataclass
class _Chunk:
    data: bytes | None  # None: the end of the stream (EOF)
    arrival: float
    passed: set[int] = field(default_factory=set)
    release: dict[int, float] = field(default_factory=dict)
    close_after: bool = False


class _Pipe:
    """One direction of a connection: from ``src`` to ``dst``, through the toxics of ``stream``."""

    def __init__(self, conn: _Connection, stream: str, src: _Side, dst: _Side) -> None:
        self.conn = conn
        self.stream = stream
        self.src = src
        self.dst = dst
        src.reading_out = self
        dst.writing_in = self
        self.queue: deque[_Chunk] = deque()
        self.queued = 0
        self.dst_full = False
        self.done = False  # EOF delivered to dst (or dst gone)
        self.task: asyncio.Task | None = None
        self._waker: asyncio.Future | None = None
        self._bandwidth_next: dict[int, float] = {}
        self._counts: dict[int, int] = {}

    @property
    def blocked(self) -> bool:
        return self.dst_full or self.queued >= _QUEUE_HIGH

    def feed(self, data: bytes) -> None:
        if (not self.queue and self.task is None and self.conn.established
                and not self.conn.has_data_toxics(self.stream)):
            self.dst.transport.write(data)  # type: ignore[union-attr]  # the no-toxic path
            return
        self.queue.append(_Chunk(data, self.conn.loop.time()))
        self.queued += len(data)
        if self.queued >= _QUEUE_HIGH:
            self.src.update_reading()
        self._kick()

    def feed_eof(self) -> None:
        if self.done or (self.queue and self.queue[-1].data is None):
            return
        if not self.queue and self.task is None and self.conn.established and not self.conn.toxics(self.stream):
            self._deliver_eof()
            return
        self.queue.append(_Chunk(None, self.conn.loop.time()))
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
                if self.queued < _QUEUE_HIGH:
                    self.src.update_reading()
                if chunk.data and not self.dst.transport.is_closing():  # type: ignore[union-attr]
                    self.dst.transport.write(chunk.data)  # type: ignore[union-attr]
                if chunk.close_after:
                    self.conn.close("graceful")
                    return
                while self.dst_full and not self.conn.closed:
                    await self._sleep(math.inf)
        finally:
            self.task = None

    async def _through_toxics(self, chunk: _Chunk) -> bool:
        """Wait until every toxic of the stream lets ``chunk`` pass, in toxic order; False once closed."""
        while True:
            if self.conn.closed or self.done:
                return False
            if not self.conn.established:  # data read before the upstream answered (uvloop reads at once)
                await self._sleep(math.inf)
                continue
            now = self.conn.loop.time()
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

    def _hold(self, toxic: Toxic, chunk: _Chunk, now: float) -> float:
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
                    rest = _Chunk(chunk.data[slice_bytes:], chunk.arrival, set(chunk.passed), dict(chunk.release))
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
                chunk.data = chunk.data[:max(0, left)]
                chunk.close_after = True
            self._counts[uid] = count + len(chunk.data)
        return 0.0

    def _deliver_eof(self) -> None:
        self.done = True
        transport = self.dst.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        self.conn.pipe_done()


class _Connection:
    """A client connection and its upstream connection, joined by two pipes."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client = _Side(self, "client")
        self.upstream = _Side(self, "upstream")
        self.up = _Pipe(self, "upstream", self.client, self.upstream)
        self.down = _Pipe(self, "downstream", self.upstream, self.client)
        self.established = False
        self.closed = False
        self._rolls: dict[int, bool] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._connect_task: asyncio.Task | None = None

    # toxics as they apply to this connection
    def _applies(self, toxic: Toxic) -> bool:
        rolled = self._rolls.get(toxic.uid)
        if rolled is None:
            rolled = self._rolls[toxic.uid] = toxic.toxicity >= 1.0 or random.random() < toxic.toxicity
        return rolled

    def toxics(self, stream: str) -> list[Toxic]:
        return [t for t in self.proxy.toxics.values() if t.stream == stream and self._applies(t)]

    def has_data_toxics(self, stream: str) -> bool:
        return bool(self.proxy.toxics) and any(t.type in _DATA_TOXICS for t in self.toxics(stream))

    def toxics_changed(self) -> None:
        """Start or cancel connection timers and re-evaluate held chunks after a toxic change."""
        if self.closed or not self.established:
            return
        live: dict[int, Toxic] = {}
        for toxic in self.proxy.toxics.values():
            if self._applies(toxic) and (toxic.type == "reset_peer"
                                         or (toxic.type == "timeout" and toxic.attributes["timeout"] > 0)):
                live[toxic.uid] = toxic
        for uid in list(self._timers):
            if uid not in live:
                self._timers.pop(uid).cancel()
        for uid, toxic in live.items():
            if uid not in self._timers:
                mode = "reset" if toxic.type == "reset_peer" else "graceful"
                self._timers[uid] = self.loop.call_later(toxic.attributes["timeout"] / 1000.0, self.close, mode)
        for pipe in (self.up, self.down):
            pipe.wake()
            if pipe.queue:
                pipe._kick()

    # life cycle
    def side_made(self, side: _Side) -> None:
        if side is self.client:
            side.update_reading()  # paused: nothing is read before the upstream is connected
            self._connect_task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.proxy.upstream
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: self.upstream, host, port), _CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            self.close("reset")  # the client sees what a refused or unreachable link looks like
            return
        finally:
            self._connect_task = None
        if self.closed:
            self.upstream.transport.abort()  # type: ignore[union-attr]
            return
        self.established = True
        self.toxics_changed()
        self.client.update_reading()
        self.upstream.update_reading()

    def pipe_done(self) -> None:
        if self.up.done and self.down.done:
            self.close("graceful")

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if self.closed:
            return
        if exc is not None:
            self.close("reset")  # pass a reset on, as the network between the two would
            return
        side.writing_in.discard()  # type: ignore[union-attr]
        side.reading_out.feed_eof()  # type: ignore[union-attr]
        self.pipe_done()

    def close(self, mode: str) -> None:
        """Close both sockets: ``graceful`` (flush, FIN), ``cut`` (drop buffers) or ``reset`` (RST)."""
        if self.closed:
            return
        self.closed = True
        self.proxy.connections.discard(self)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._connect_task is not None:
            self._connect_task.cancel()
        for pipe in (self.up, self.down):
            pipe.discard()
        for side in (self.client, self.upstream):
            transport = side.transport
            if transport is None or side.lost:
                continue
            if mode == "graceful":
                transport.close()
                continue
            if mode == "reset":
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()


# -- a proxy ------------------------------------------------------------------

class Proxy:
    """One listen address forwarding to one upstream, with its toxics."""

    def __init__(self, name: str, upstream: tuple[str, int], listen_port: int = 0) -> None:
        self.name = name
        self.upstream = upstream
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[_Connection] = set()
        self.enabled = False
        self._server: asyncio.base_events.Server | None = None
        self._socket = _bind(listen_port)  # held while disabled, so the port stays ours
        self.port: int = self._socket.getsockname()[1]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": f"{LOOPBACK}:{self.port}",
                "upstream": f"{self.upstream[0]}:{self.upstream[1]}", "enabled": self.enabled,
                "toxics": [t.to_json() for t in self.toxics.values()]}

    async def set_enabled(self, enabled: bool) -> None:
        """Enabled: listen and forward. Disabled: refuse new connections and cut existing ones."""
        if enabled == self.enabled:
            return
        if enabled:
            self._server = await asyncio.get_running_loop().create_server(self._accept, sock=self._socket,
                                                                          backlog=1024)
            self._socket = None  # the server owns it now
            self.enabled = True
            return
        self.enabled = False
        server, self._server = self._server, None
        server.close()  # closes the listening socket...
        self._socket = _bind(self.port)  # ...so bind the port again at once, without listening: refused
        for conn in list(self.connections):
            conn.close("cut")

    def _accept(self) -> _Side:
        conn = _Connection(self)
        self.connections.add(conn)
        return conn.client

    def set_toxic(self, toxic: Toxic) -> None:
        self.toxics[toxic.name] = toxic
        self._changed()

    def remove_toxic(self, name: str) -> None:
        del self.toxics[name]
        self._changed()

    def remove_all_toxics(self) -> None:
        if self.toxics:
            self.toxics.clear()
            self._changed()

    def _changed(self) -> None:
        for conn in list(self.connections):
            conn.toxics_changed()

    async def close(self) -> None:
        """Stop listening, cut every connection and release the port."""
        await self.set_enabled(False)
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebinding over TIME_WAIT after a disable
    try:
        sock.bind((LOOPBACK, port))
    except OSError as error:
        sock.close()
        raise ProxyApiError(409, f"listen address {LOOPBACK}:{port} is busy: {error.strerror}") from None
    sock.setblocking(False)
    return sock


def _parse_address(text: Any, what: str) -> tuple[str, int]:
    if not isinstance(text, str) or ":" not in text:
        raise ProxyApiError(400, f"{what} must be 'host:port', not {text!r}")
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ProxyApiError(400, f"{what} {text!r} has no valid port")
    if host == "localhost":
        host = LOOPBACK
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ProxyApiError(400, f"{what} {text!r} is not on loopback; this proxy only serves 127.0.0.1")
    return host, int(port_text)


# -- the server and its control API -------------------------------------------

class FaultProxyServer:
    """Every proxy plus the Toxiproxy-style HTTP control API, in one event loop.

    The methods are the API itself (usable in-process); :meth:`start` also
    serves them over HTTP on ``control_host:control_port`` (0 = a free port).
    """

    def __init__(self, control_host: str = LOOPBACK, control_port: int = 0) -> None:
        self.control_host = control_host
        self.control_port = control_port
        self.proxies: dict[str, Proxy] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Serve the control API; return its port."""
        app = web.Application(middlewares=[_errors_as_json])
        route = app.router.add_route
        route("GET", "/version", self._h_version)
        route("GET", "/proxies", self._h_proxies)
        route("POST", "/proxies", self._h_create)
        route("POST", "/reset", self._h_reset)
        route("GET", "/proxies/{proxy}", self._h_proxy)
        route("POST", "/proxies/{proxy}", self._h_update)
        route("DELETE", "/proxies/{proxy}", self._h_delete)
        route("GET", "/proxies/{proxy}/toxics", self._h_toxics)
        route("POST", "/proxies/{proxy}/toxics", self._h_add_toxic)
        route("GET", "/proxies/{proxy}/toxics/{toxic}", self._h_toxic)
        route("POST", "/proxies/{proxy}/toxics/{toxic}", self._h_update_toxic)
        route("DELETE", "/proxies/{proxy}/toxics/{toxic}", self._h_remove_toxic)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.control_host, self.control_port, reuse_address=True)
        await site.start()
        self.control_port = self._runner.addresses[0][1]
        return self.control_port

    async def stop(self) -> None:
        """Close every proxy (connections cut, ports released) and the control API; idempotent."""
        for proxy in list(self.proxies.values()):
            await proxy.close()
        self.proxies.clear()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # the API, in-process
    def proxy(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise ProxyApiError(404, f"no proxy named {name!r} (proxies: {', '.join(self.proxies) or 'none'})") \
                from None

    async def create_proxy(self, data: dict[str, Any]) -> Proxy:
        """Create from Toxiproxy's JSON: ``name``, ``upstream``, ``listen`` (port 0 = free), ``enabled``."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"] \
                or "/" in data["name"]:
            raise ProxyApiError(400, "a proxy needs a 'name' (a string without '/')")
        name = data["name"]
        if name in self.proxies:
            raise ProxyApiError(409, f"proxy {name!r} already exists")
        upstream = _parse_address(data.get("upstream"), "upstream")
        _, listen_port = _parse_address(data.get("listen", f"{LOOPBACK}:0"), "listen")
        proxy = Proxy(name, upstream, listen_port)
        self.proxies[name] = proxy
        await proxy.set_enabled(bool(data.get("enabled", True)))
        return proxy

    async def update_proxy(self, name: str, data: dict[str, Any]) -> Proxy:
        """Change ``enabled`` and/or ``upstream`` (new connections); ``listen`` cannot change."""
        proxy = self.proxy(name)
        if not isinstance(data, dict):
            raise ProxyApiError(400, "a proxy update is a JSON object")
        if "listen" in data and _parse_address(data["listen"], "listen")[1] not in (0, proxy.port):
            raise ProxyApiError(400, f"proxy {name!r} keeps its listen port {proxy.port} for its whole life")
        if "upstream" in data:
            proxy.upstream = _parse_address(data["upstream"], "upstream")
        if "enabled" in data:
            if not isinstance(data["enabled"], bool):
                raise ProxyApiError(400, f"enabled must be true or false, not {data['enabled']!r}")
            await proxy.set_enabled(data["enabled"])
        return proxy

    async def delete_proxy(self, name: str) -> None:
        await self.proxy(name).close()
        del self.proxies[name]

    def add_toxic(self, proxy_name: str, data: dict[str, Any]) -> Toxic:
        proxy = self.proxy(proxy_name)
        toxic = make_toxic(data)
        if toxic.name in proxy.toxics:
            raise ProxyApiError(409, f"proxy {proxy_name!r} already has a toxic named {toxic.name!r}")
        proxy.set_toxic(toxic)
        return toxic

    def toxic(self, proxy_name: str, toxic_name: str) -> Toxic:
        proxy = self.proxy(proxy_name)
        try:
            return proxy.toxics[toxic_name]
        except KeyError:
            raise ProxyApiError(404, f"proxy {proxy_name!r} has no toxic named {toxic_name!r} (toxics: "
                                     f"{', '.join(proxy.toxics) or 'none'})") from None

    def update_toxic(self, proxy_name: str, toxic_name: str, data: dict[str, Any]) -> Toxic:
        base = self.toxic(proxy_name, toxic_name)
        if isinstance(data, dict) and data.get("name", toxic_name) != toxic_name:
            raise ProxyApiError(400, "a toxic cannot be renamed; remove it and add another")
        if isinstance(data, dict) and data.get("stream", base.stream) != base.stream:
            raise ProxyApiError(400, "a toxic's stream cannot change; remove it and add another")
        toxic = make_toxic(data, base)
        self.proxy(proxy_name).set_toxic(toxic)
        return toxic

    def remove_toxic(self, proxy_name: str, toxic_name: str) -> None:
        self.toxic(proxy_name, toxic_name)
        self.proxy(proxy_name).remove_toxic(toxic_name)

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        for proxy in self.proxies.values():
            proxy.remove_all_toxics()
            await proxy.set_enabled(True)

    # HTTP handlers: thin JSON wrappers over the methods above
    async def _h_version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def _h_proxies(self, request: web.Request) -> web.Response:
        return web.json_response({name: p.to_json() for name, p in self.proxies.items()})

    async def _h_create(self, request: web.Request) -> web.Response:
        proxy = await self.create_proxy(await _json_body(request))
        return web.json_response(proxy.to_json(), status=201)

    async def _h_reset(self, request: web.Request) -> web.Response:
        await self.reset()
        return web.Response(status=204)

    async def _h_proxy(self, request: web.Request) -> web.Response:
        return web.json_response(self.proxy(request.match_info["proxy"]).to_json())

    async def _h_update(self, request: web.Request) -> web.Response:
        proxy = await self.update_proxy(request.match_info["proxy"], await _json_body(request))
        return web.json_response(proxy.to_json())

    async def _h_delete(self, request: web.Request) -> web.Response:
        await self.delete_proxy(request.match_info["proxy"])
        return web.Response(status=204)

    async def _h_toxics(self, request: web.Request) -> web.Response:
        proxy = self.proxy(request.match_info["proxy"])
        return web.json_response([t.to_json() for t in proxy.toxics.values()])

    async def _h_add_toxic(self, request: web.Request) -> web.Response:
        toxic = self.add_toxic(request.match_info["proxy"], await _json_body(request))
        return web.json_response(toxic.to_json())

    async def _h_toxic(self, request: web.Request) -> web.Response:
        return web.json_response(self.toxic(request.match_info["proxy"], request.match_info["toxic"]).to_json())

    async def _h_update_toxic(self, request: web.Request) -> web.Response:
        toxic = self.update_toxic(request.match_info["proxy"], request.match_info["toxic"],
                                  await _json_body(request))
        return web.json_response(toxic.to_json())

    async def _h_remove_toxic(self, request: web.Request) -> web.Response:
        self.remove_toxic(request.match_info["proxy"], request.match_info["toxic"])
        return web.Response(status=204)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ProxyApiError(400, "the request body is not valid JSON") from None


@web.middleware
async def _errors_as_json(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyApiError as error:
        return web.json_response({"error": str(error), "status": error.status}, status=error.status)
    except web.HTTPException as error:
        return web.json_response({"error": f"{request.method} {request.path}: {error.reason}",
                                  "status": error.status}, status=error.status)


# -- the process ----------------------------------------------------------------

async def _serve(control: tuple[str, int], exit_with_parent: bool, loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = FaultProxyServer(*control)
    port = await server.start()
    print(json.dumps({"ready": True, "control_url": f"http://{control[0]}:{port}", "port": port,
                      "pid": os.getpid(), "loop": loop_name}), flush=True)
    parent = os.getppid()
    try:
        while not stop.is_set():
            # a killed suite must not leave its proxy behind: leave when the parent is gone
            if exit_with_parent and os.getppid() != parent:
                break
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m support.proxy.server --control 127.0.0.1:PORT [--exit-with-parent]``."""
    parser = argparse.ArgumentParser(prog="python -m support.proxy.server", description=__doc__.splitlines()[0])
    parser.add_argument("--control", default=f"{LOOPBACK}:8474", help="host:port of the control API (port 0 = free)")
    parser.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process dies")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="event loop; auto = uvloop when installed (about half the per-message overhead)")
    args = parser.parse_args(argv)
    try:
        control = _parse_address(args.control, "--control")
    except ProxyApiError as error:
        parser.error(str(error))
    loop_name, loop_factory = _event_loop(args.loop)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(control, args.exit_with_parent, loop_name))
    return 0


def _event_loop(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", None


if __name__ == "__main__":
    sys.exit(main())
