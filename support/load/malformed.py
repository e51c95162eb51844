"""The malformed share of a load: requests a service must refuse with a 4xx, never a 5xx.

``Given 20% of the load is malformed`` makes that share of the load worker's
requests (from ``malformed_after`` seconds into the load on, so the phase
before it is clean) one of four hostile forms of the workload's write, drawn in
turn:

- ``bad_json``: a body cut off in the middle of a JSON object;
- ``wrong_types``: valid JSON whose every field is a list, not the value it should be;
- ``oversized``: a JSON object of about ``OVERSIZED_BYTES`` (1 MB) whose fields are far too long;
- ``slow_headers``: a slow-loris client: the head of a ``bad_json`` request sent in
  ``SLOW_PIECES`` pieces over ``SLOW_SECONDS``, on a connection of its own.

Each is recorded in the history with ``op`` :data:`MALFORMED` and its form as
the ``key``, and the outcome the worker gives any answer (a 4xx is ``fail``:
known not applied). Nothing malformed is ever a write the durability checker
reads back.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

from support.load.client import Answer, HttpClient
from support.stack.workload import Workload

__all__ = ["MALFORMED", "KINDS", "MalformedShare", "OVERSIZED_BYTES", "SLOW_SECONDS", "SLOW_PIECES"]

#: the history's ``op`` of a malformed request
MALFORMED = "malformed"
KINDS = ("bad_json", "wrong_types", "oversized", "slow_headers")
OVERSIZED_BYTES = 1_000_000
SLOW_SECONDS = 1.0
SLOW_PIECES = 10


class MalformedShare:
    """Draws which requests are malformed (``share``, 0..1) and sends them; part of the worker's hot path only
    through :meth:`draw`, one ``random()`` per request."""

    def __init__(self, share: float, after: float, workload: Workload, base: str, run: str, rng: random.Random) -> None:
        self.share = share
        self.after = after
        self.rng = rng
        self.next_kind = 0
        write = workload.write
        self.method = write.method
        _key, path, payload, _expected = write.record(f"{run}-malformed", 0)
        self.path = base + path
        # the write's own field names, each given a value of the wrong shape (JSON even for a form write:
        # a service that takes a form must refuse JSON it did not ask for as well)
        fields = dict(payload) if isinstance(payload, dict) and payload else {"name": "x", "email": "x@load.test"}
        self.bodies = {
            "bad_json": json.dumps(fields).encode()[:-3],
            "wrong_types": json.dumps({name: [1, {"not": "a value"}] for name in fields}).encode(),
            "oversized": json.dumps({name: "x" * (OVERSIZED_BYTES // len(fields)) for name in fields}).encode(),
        }
        self.bodies["slow_headers"] = self.bodies["bad_json"]

    def draw(self, since_start: float) -> str | None:
        """The form of the next request if it is to be malformed (``since_start``: s since the load began)."""
        if since_start < self.after or self.rng.random() >= self.share:
            return None
        kind = KINDS[self.next_kind % len(KINDS)]
        self.next_kind += 1
        return kind

    def send(self, client: HttpClient, kind: str, timeout: float, callback: Callable[[Answer], None]) -> None:
        """Send one malformed request of ``kind``; ``callback`` gets its answer once (as :class:`HttpClient` does)."""
        body = self.bodies[kind]
        if kind != "slow_headers":
            client.send(self.method, self.path, body, callback)
            return
        head = (
            f"{self.method} {self.path} HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            "X-Chaos-Slow: " + "s" * 200 + "\r\n\r\n"
        ).encode()
        task = asyncio.get_running_loop().create_task(_slow_request(client.host, client.port, head, body, timeout))
        task.add_done_callback(lambda done: callback(done.result()))


async def _slow_request(host: str, port: int, head: bytes, body: bytes, timeout: float) -> Answer:
    """A slow-loris request: ``head`` in :data:`SLOW_PIECES` pieces over :data:`SLOW_SECONDS`, then ``body``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as error:
        return Answer(None, error=f"could not connect: {error}"[:200], sent=False)
    try:
        return await asyncio.wait_for(_slow_exchange(reader, writer, head, body), timeout)
    except TimeoutError:
        return Answer(None, error="timeout")
    except OSError as error:
        return Answer(None, error=f"connection error: {error}"[:200])
    finally:
        writer.close()


async def _slow_exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes
) -> Answer:
    size = max(1, len(head) // SLOW_PIECES + 1)
    for i in range(0, len(head), size):
        writer.write(head[i : i + size])
        await writer.drain()
        # the pause between pieces is what a slow-loris client is; it is not synchronisation
        await asyncio.sleep(SLOW_SECONDS / SLOW_PIECES)
    writer.write(body)
    await writer.drain()
    line = await reader.readline()
    parts = line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return Answer(None, error="server disconnected" if not line else f"malformed answer: {line[:80]!r}")
    return Answer(int(parts[1]))
