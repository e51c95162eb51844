"""The load worker's request mix: which operation of the workload goes next, and how its answer is judged.

An operation is drawn by weight (one ``random()`` and a bisection per request);
a read-back draws a record its write acknowledged, or writes one while there is
none yet. Acknowledged writes are remembered per write operation. Part of the
worker's hot path: everything that can be worked out once is, here.
"""

from __future__ import annotations

import json
import random
from bisect import bisect_right
from itertools import accumulate
from typing import Any

from support.load.history import FAIL, INFO, OK
from support.stack.operations import Operation, render
from support.stack.workload import Workload

__all__ = ["Mix", "Choice"]

_NO_BODY: tuple[bytes | None, str] = (None, "application/json")

#: (operation, op, key, body, method, path, (data, content type), expected compared values of a read-back);
#: ``op`` is the history's "write" or "read", ``body`` the compared values a write sent
Choice = tuple[Operation, str, str, str, str, str, tuple[bytes | None, str], str | None]


class Mix:
    """The operations of ``workload`` drawn by weight (the flat form's by ``write_fraction``, 0..1)."""

    def __init__(self, workload: Workload, write_fraction: float, run: str, base: str, rng: random.Random) -> None:
        self.workload = workload
        self.run = run
        self.base = base  # the URL path every request goes under
        self.rng = rng
        self.seq = 0
        self.ops = workload.operations
        weights = workload.weights(write_fraction)
        total = sum(weights) or 1.0
        self.cumulative = [c / total for c in accumulate(weights)]
        self.cumulative[-1] = 1.0  # random() < 1.0: every draw falls on an operation
        self.writes = {op.name: op for op in self.ops if op.is_write}
        # (id, key, expected) of acknowledged writes, per write operation; ``acked`` is the first write's
        self.acked_by: dict[str, list[tuple[Any, str, str]]] = {name: [] for name in self.writes}
        self.acked = self.acked_by[workload.write.name]
        # plain operations send the same bytes every time: encoded once
        self.plain = {
            op.name: op.encode(render(op.body, {"run": run})) for op in self.ops if not op.is_write and not op.reads
        }

    def choose(self) -> Choice:
        """The next request; see :data:`Choice`."""
        op = self.ops[bisect_right(self.cumulative, self.rng.random())]
        if op.reads:
            acked = self.acked_by[op.reads]
            write = self.writes[op.reads]
            if acked:
                ident, key, expected = self.rng.choice(acked)
                read = write.read
                assert read is not None
                return (
                    write,
                    "read",
                    key,
                    "",
                    read.method,
                    self.base + read.path.replace("{id}", str(ident)),
                    _NO_BODY,
                    expected,
                )
            op = write  # nothing acknowledged to read yet: write one
        if op.is_write:
            seq, self.seq = self.seq, self.seq + 1
            key, path, payload, expected = op.record(self.run, seq)
            return op, "write", key, expected, op.method, self.base + path, op.encode(payload), None
        return op, "read", "", "", op.method, self.base + op.path, self.plain[op.name], None

    def judge(
        self,
        status: int,
        data: bytes,
        op: str,
        expected: str | None,
        body: str,
        key: str = "",
        operation: Operation | None = None,
    ) -> str:
        """Outcome of an answered request; remembers acknowledged writes for later reads.

        ``operation`` is the write (of a write or a read-back; the first write if None), or the plain operation.
        """
        if status >= 500:
            return INFO
        if status >= 300:
            return FAIL
        try:
            row = json.loads(data)
        except ValueError:
            row = None
        operation = operation or self.workload.write
        if op == "write":
            read = operation.read
            assert read is not None
            if isinstance(row, dict) and read.id_field in row:
                self.acked_by[operation.name].append((row[read.id_field], key, body))
            return OK  # the status acknowledged it, whatever the body
        if not operation.is_write:
            return OK  # a plain operation: its 2xx is all it promises
        if expected is None or not operation.matches(row, expected):
            return FAIL
        return OK
