"""A 503, not a silent wait or a reset, for the clients a process out of file descriptors cannot accept.

A process at its descriptor limit (``RLIMIT_NOFILE``) cannot ``accept()`` a
client: asyncio's selector loop reports EMFILE to the loop's exception handler,
stops watching the listening socket for a second (``ACCEPT_RETRY_DELAY``) and
tries again, so the clients wait in the kernel's queue until a descriptor is
free, time out, or are reset. The classic protection (nginx, libev, Node) is
one spare descriptor kept in reserve: when ``accept`` fails, close the spare,
accept the waiting client with its slot, answer it a short 503 with
``Retry-After`` and ``Connection: close``, close it, take the spare back, and
again for every client waiting.

:class:`DescriptorReserve` does this from the loop's exception handler, the hook
asyncio offers for it: in Python 3.11 ``BaseSelectorEventLoop._accept_connection``
calls ``call_exception_handler`` with ``exception`` (the ``OSError``, errno
EMFILE or ENFILE; also ENOBUFS and ENOMEM, which are no descriptor shortage and
are left to the previous handler) and ``socket`` (an ``asyncio.TransportSocket``
of the listening socket), then pauses accepting for a second. The handler
drains every connection waiting at that moment; a client that connects during
the pause is answered at the next failed ``accept``, at most a second later.

uvloop (libuv) does its own reserve trick inside the C loop: it accepts and
closes the waiting clients (a reset, no answer) and never calls the handler.
:meth:`DescriptorReserve.install` logs that once; run uvicorn with ``--loop asyncio``.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from .errors import RETRY_AFTER_SECONDS, error_response

__all__ = ["DescriptorReserve", "REFUSAL"]

log = logging.getLogger("users_api")

Handler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]

_SHORTAGE = (errno.EMFILE, errno.ENFILE)  # per-process and system-wide descriptor limits


def _refusal() -> bytes:
    """The whole answer a refused client gets, written in one ``send``: the API's JSON error body."""
    body = bytes(
        error_response(503, "server overloaded", "out of file descriptors: no connection can be accepted now").body
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"retry-after: {RETRY_AFTER_SECONDS}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


REFUSAL = _refusal()

_REQUEST_WAIT = 0.02  # s a refused client's request may take to arrive: read first, so the close sends no RST
_DRAIN_BUDGET = 0.1  # s of waits per drain: clients that send nothing cannot hold the loop for long
_READ = 65536  # bytes of a refused client's request read (and dropped) before the answer


class DescriptorReserve:
    """One descriptor held open (``/dev/null``) so that a client can still be accepted and refused at the limit.

    Make it early (:func:`users_api.main.create_app` does, at import): the kernel gives a new descriptor
    the lowest free number and refuses one at or above the limit, so a spare freed under a limit set
    below what the process holds helps only if its number is below that limit.
    ``refused`` counts the clients answered 503 since the start; ``clock`` (monotonic s) bounds the waits
    and paces the log (one line a second at most).
    """

    def __init__(self, path: str = os.devnull, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self.refused = 0
        self.previous: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._tick_done = False
        self._unlogged = 0
        self._logged_at = float("-inf")
        self.take()

    @property
    def held(self) -> bool:
        """True while the spare descriptor is held (it is given back when a refusal could not reopen it)."""
        return self._fd >= 0

    def take(self) -> bool:
        """Hold the spare descriptor again if it is not held; False when that is not possible now."""
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False  # still at the limit: the next shortage tries again
        return True

    def _give_back(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        """Release the spare descriptor (idempotent)."""
        self._give_back()

    # -- the loop's exception handler ---------------------------------------------------------

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Answer ``loop``'s failed accepts; False (and one warning) on a loop that is no asyncio selector loop.

        The handler the loop had is kept and still gets every other error.
        """
        if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            log.warning(
                "no descriptor reserve on %s: out of descriptors, clients are reset or wait instead of a 503"
                " (run uvicorn with --loop asyncio)",
                type(loop).__module__,
            )
            return False
        self.take()
        self._loop, self.previous = loop, loop.get_exception_handler()
        loop.set_exception_handler(self.handle)
        return True

    def uninstall(self) -> None:
        """Give the loop its handler back and release the spare descriptor (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.get_exception_handler() == self.handle:
            loop.set_exception_handler(self.previous)
        self.close()

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: refuse the waiting clients on a descriptor shortage, else pass it on."""
        exc, listener = context.get("exception"), context.get("socket")
        if isinstance(exc, OSError) and exc.errno in _SHORTAGE and listener is not None and _listening(listener):
            # asyncio goes on calling accept after the handler, up to its backlog (2048) times in one loop
            # turn, and calls the handler again each time it fails: one drain per turn is enough
            if not self._tick_done:
                self._tick_done = True
                loop.call_soon(self._next_tick)
                self._unlogged += self.refuse_waiting(listener.fileno())
                self._log(exc)
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def _next_tick(self) -> None:
        self._tick_done = False

    def _log(self, exc: OSError) -> None:
        now = self.clock()
        if now - self._logged_at < 1.0:
            return
        self._logged_at = now
        log.warning(
            "out of file descriptors (%s): %d new client(s) answered 503 since the last such line%s",
            exc.strerror or exc,
            self._unlogged,
            "" if self.held else "; the spare descriptor could not be taken back yet",
        )
        self._unlogged = 0

    def refuse_waiting(self, listen_fd: int) -> int:
        """Accept every client waiting on the listening socket ``listen_fd`` and answer it 503; how many were.

        Each client takes the spare's slot and gives it back: at most one is open at a time. Stops when
        no client waits, or when another thread took the freed slot first (that accept fails again).
        """
        if not self.take():
            return 0
        # a socket object on the same descriptor, not a dup: a new descriptor is what the process lacks
        listener = socket.socket(fileno=listen_fd)
        refused, budget_end = 0, self.clock() + _DRAIN_BUDGET
        try:
            listener.setblocking(False)  # it already is (asyncio's); the object must know it
            while True:
                self._give_back()
                try:
                    client, _ = listener.accept()
                except OSError:  # BlockingIOError: nobody waits; EMFILE: another thread took the slot
                    break
                try:
                    self._refuse(client, wait=self.clock() < budget_end)
                finally:
                    client.close()
                refused += 1
                if not self.take():
                    break
        finally:
            listener.detach()  # the descriptor stays asyncio's
            self.take()
        self.refused += refused
        return refused

    def _refuse(self, client: socket.socket, wait: bool) -> None:
        """Read what the client sent, answer :data:`REFUSAL`, and half-close; never blocks the loop for long."""
        try:
            client.setblocking(False)
            if wait:
                # poll(2) needs no descriptor of its own, where epoll or a selector would
                poller = select.poll()
                poller.register(client, select.POLLIN)
                poller.poll(_REQUEST_WAIT * 1000)
            _drain(client)
            client.send(REFUSAL)  # a few hundred bytes: the empty send buffer takes them at once
            client.shutdown(socket.SHUT_WR)
            _drain(client)  # what came meanwhile: unread bytes at close would make it a reset
        except OSError:
            pass  # the client went away: nothing to answer


def _drain(client: socket.socket) -> None:
    try:
        while client.recv(_READ):
            pass
    except OSError:  # BlockingIOError: all read
        pass


def _listening(listener: Any) -> bool:
    try:
        return bool(listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except (OSError, AttributeError):
        return False
