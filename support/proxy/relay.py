"""The data plane: listeners on loopback, and each accepted connection joined to its upstream by two pipes.

A :class:`Proxy` listens on 127.0.0.1 (port 0 = a free port, kept for the
proxy's whole life, also while it is disabled) and forwards to an upstream on
loopback. ``enabled=false`` is the whole link down: new connections are
refused (the port stays bound but does not listen) and existing ones are cut.
A :class:`Connection` is a client socket and its upstream socket
(:class:`Side` each) with one :class:`~support.proxy.pipe.Pipe` per direction;
it owns the toxics that act on the connection as a whole (``reset_peer``, a
``timeout`` > 0) and how it closes (graceful, cut, reset).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import Any

from support.proxy.pipe import Pipe
from support.proxy.toxics import DATA_TOXICS, ProxyApiError, Toxic

__all__ = ["Proxy", "Connection", "Side", "LOOPBACK"]

LOOPBACK = "127.0.0.1"
#: asyncio write-buffer high-water mark per socket; above it the other socket stops being read
_WRITE_HIGH = 1 << 20
_CONNECT_TIMEOUT = 5.0


class Side(asyncio.Protocol):
    """One socket of a proxied connection: the client's or the upstream's."""

    def __init__(self, conn: Connection, role: str) -> None:
        self.conn = conn
        self.role = role
        self.transport: asyncio.Transport | None = None
        self.reading_out: Pipe | None = None  # the pipe that reads from this socket
        self.writing_in: Pipe | None = None  # the pipe that writes to this socket
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        transport.set_write_buffer_limits(high=_WRITE_HIGH)  # type: ignore[attr-defined]  # a stream transport's
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


class Connection:
    """A client connection and its upstream connection, joined by two pipes."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client = Side(self, "client")
        self.upstream = Side(self, "upstream")
        self.up = Pipe(self, "upstream", self.client, self.upstream)
        self.down = Pipe(self, "downstream", self.upstream, self.client)
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
        return bool(self.proxy.toxics) and any(t.type in DATA_TOXICS for t in self.toxics(stream))

    def toxics_changed(self) -> None:
        """Start or cancel connection timers and re-evaluate held chunks after a toxic change."""
        if self.closed or not self.established:
            return
        live: dict[int, Toxic] = {}
        for toxic in self.proxy.toxics.values():
            if self._applies(toxic) and (
                toxic.type == "reset_peer" or (toxic.type == "timeout" and toxic.attributes["timeout"] > 0)
            ):
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
    def side_made(self, side: Side) -> None:
        if side is self.client:
            side.update_reading()  # paused: nothing is read before the upstream is connected
            self._connect_task = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.proxy.upstream
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: self.upstream, host, port), _CONNECT_TIMEOUT)
        except (TimeoutError, OSError):
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

    def side_lost(self, side: Side, exc: Exception | None) -> None:
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


class Proxy:
    """One listen address forwarding to one upstream, with its toxics."""

    def __init__(self, name: str, upstream: tuple[str, int], listen_port: int = 0, protocol: str = "tcp") -> None:
        self.name = name
        #: ``tcp`` (bytes) or ``http`` (the client's stream is cut into requests for the HTTP toxics)
        self.protocol = protocol
        self.upstream = upstream
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[Connection] = set()
        self.enabled = False
        self._server: asyncio.base_events.Server | None = None
        sock = bind(listen_port)
        self._socket: socket.socket | None = sock  # held while disabled, so the port stays ours
        self.port: int = sock.getsockname()[1]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": f"{LOOPBACK}:{self.port}",
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "enabled": self.enabled,
            "protocol": self.protocol,
            "toxics": [t.to_json() for t in self.toxics.values()],
        }

    async def set_enabled(self, enabled: bool) -> None:
        """Enabled: listen and forward. Disabled: refuse new connections and cut existing ones."""
        if enabled == self.enabled:
            return
        if enabled:
            assert self._socket is not None  # a disabled proxy holds its port
            self._server = await asyncio.get_running_loop().create_server(self._accept, sock=self._socket, backlog=1024)
            self._socket = None  # the server owns it now
            self.enabled = True
            return
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()  # closes the listening socket...
        self._socket = bind(self.port)  # ...so bind the port again at once, without listening: refused
        for conn in list(self.connections):
            conn.close("cut")

    def _accept(self) -> Side:
        conn = Connection(self)
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


def bind(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0 = free), not listening; 409 when the port is busy."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebinding over TIME_WAIT after a disable
    try:
        sock.bind((LOOPBACK, port))
    except OSError as error:
        sock.close()
        raise ProxyApiError(409, f"listen address {LOOPBACK}:{port} is busy: {error.strerror}") from None
    sock.setblocking(False)
    return sock
