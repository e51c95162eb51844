"""The record of every request a load sent, as Jepsen records its operations, and the one percentile.

Times are ``time.monotonic()`` seconds, which is one clock for every process on
the machine, so a load worker's history lines up with the fault timeline kept by
the suite's own process.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Literal, TextIO, cast

__all__ = ["Outcome", "Request", "OK", "FAIL", "INFO", "write_csv", "to_csv", "from_csv", "percentile"]

Outcome = Literal["ok", "fail", "info"]
OK: Outcome = "ok"
FAIL: Outcome = "fail"  # known not applied: 4xx, or refused before the request was sent
INFO: Outcome = "info"  # unknown: timeout, reset, or 5xx after the request was sent


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a load, from launch to answer (or to giving up).

    ``op`` is ``"write"`` or ``"read"`` (a read-back of an acknowledged write, or
    any other operation of the workload); ``key`` identifies the record written or
    read (a unique email for the reference API's writes; empty for an operation
    that is neither a write nor a read-back). ``scheduled``, ``start`` and ``end`` are
    monotonic seconds; ``status`` is the HTTP status or ``None`` when none came
    back; ``error`` is empty or a short text; ``body`` holds what a write sent
    (the workload's compared fields, tab-separated: ``name`` then ``email`` for the
    reference API) so durability can compare content.
    """

    op: str
    key: str
    scheduled: float
    start: float
    end: float
    status: int | None
    error: str
    outcome: Outcome
    body: str = ""

    @property
    def latency(self) -> float:
        """Seconds from launch to answer (or to giving up)."""
        return self.end - self.start

    @property
    def lag(self) -> float:
        """Seconds the launch came after its scheduled time."""
        return self.start - self.scheduled


def percentile(values: Iterable[float], p: float) -> float | None:
    """The ``p``-th percentile (0 < p <= 100) by nearest rank: the smallest value with at
    least ``p`` % of the values at or below it, in the values' unit; None for no values.

    The suite's one percentile: the worker's lag, the checkers' phases and the chart's
    windows all use it, so a p99 means the same number everywhere.
    """
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


_FIELDS = [f.name for f in fields(Request)]


def write_csv(out: TextIO, rows: Iterable[Sequence[object]]) -> None:
    """Write the history's CSV to ``out``: a header row, then one row per request given as a tuple
    in :class:`Request` field order (None written as empty). The load worker writes its plain
    tuples straight through this, without making a Request of each."""
    writer = csv.writer(out)
    writer.writerow(_FIELDS)
    writer.writerows(["" if v is None else v for v in row] for row in rows)


def to_csv(history: Iterable[Request]) -> str:
    """The history as CSV text with a header row."""
    out = io.StringIO()
    write_csv(out, (astuple(request) for request in history))
    return out.getvalue()


def from_csv(text: str) -> list[Request]:
    """Parse what :func:`to_csv` wrote."""
    rows = csv.DictReader(io.StringIO(text))
    return [
        Request(
            op=r["op"],
            key=r["key"],
            scheduled=float(r["scheduled"]),
            start=float(r["start"]),
            end=float(r["end"]),
            status=int(r["status"]) if r["status"] else None,
            error=r["error"],
            outcome=cast(Outcome, r["outcome"]),
            body=r.get("body", ""),
        )
        for r in rows
    ]
