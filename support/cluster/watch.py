"""The cluster watched all scenario long: every node's role and writability sampled in the background.

:class:`ClusterWatch` looks at every node every ``interval`` s from its own thread
(the suite's direct connections, never the balancer) and keeps each look with its
monotonic time. From the samples: who was primary when (:meth:`primaries`, the
chart's bands), the moments two nodes both accepted writes (:meth:`overlaps`),
and the time without a writable primary (:meth:`without_primary`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from support.cluster.view import ClusterView, NodeState

__all__ = ["Sample", "ClusterWatch", "Band", "writer_bands", "overlapping", "other_writer_at"]


@dataclass(frozen=True)
class Sample:
    """One look at one node: monotonic ``t`` (s) and what it said."""

    t: float
    state: NodeState


@dataclass(frozen=True)
class Band:
    """``node`` accepted writes from ``start`` to ``end`` (monotonic s: its first and last writable samples in a row)."""

    node: str
    start: float
    end: float


def writer_bands(samples: list[Sample]) -> list[Band]:
    """Per node, each run of consecutive samples in which it accepted writes, in time order.

    A sample that could not tell (the node did not answer) ends a run: a frozen
    or dead server accepts no writes.
    """
    bands: list[Band] = []
    open_runs: dict[str, tuple[float, float]] = {}
    for sample in sorted(samples, key=lambda s: s.t):
        name = sample.state.name
        if sample.state.writable:
            start, _ = open_runs.get(name, (sample.t, sample.t))
            open_runs[name] = (start, sample.t)
        elif name in open_runs:
            start, end = open_runs.pop(name)
            bands.append(Band(name, start, end))
    bands.extend(Band(name, start, end) for name, (start, end) in open_runs.items())
    return sorted(bands, key=lambda b: b.start)


def overlapping(bands: list[Band]) -> list[tuple[Band, Band]]:
    """Pairs of bands of two different nodes that overlap in time: two writers at once."""
    return [
        (one, other)
        for i, one in enumerate(bands)
        for other in bands[i + 1 :]
        if one.node != other.node and one.start <= other.end and other.start <= one.end
    ]


def other_writer_at(bands: list[Band], node: str, t: float, slack: float) -> str | None:
    """A node other than ``node`` seen accepting writes at monotonic ``t`` (its band widened by ``slack`` s each
    side: the samples are that far apart), or None: then only ``node`` can have acknowledged a write at ``t``."""
    for band in bands:
        if band.node != node and band.start - slack <= t <= band.end + slack:
            return band.node
    return None


class ClusterWatch:
    """Samples every node of ``view`` every ``interval`` s until :meth:`stop`."""

    def __init__(self, view: ClusterView, interval: float = 0.25) -> None:
        self.view = view
        self.interval = interval
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cluster-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for node in self.view.cluster.nodes:
                state = self.view.state(node)
                with self._lock:
                    self.samples.append(Sample(time.monotonic(), state))
            self._stop.wait(self.interval)  # the sampling period, not a synchronisation

    def snapshot(self) -> list[Sample]:
        """The samples so far."""
        with self._lock:
            return list(self.samples)

    def stop(self) -> None:
        """Stop sampling (idempotent); the samples stay."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    def bands(self) -> list[Band]:
        """Who accepted writes when."""
        return writer_bands(self.snapshot())

    def overlaps(self) -> list[tuple[Band, Band]]:
        """Every time two nodes accepted writes at once."""
        return overlapping(self.bands())

    def without_primary(self, since: float) -> float:
        """Seconds after ``since`` (monotonic) during which no node accepted writes, up to the last sample."""
        samples = [s for s in self.snapshot() if s.t >= since]
        if not samples:
            return 0.0
        covered = 0.0
        end = max(s.t for s in samples)
        for band in self.bands():
            start, stop = max(band.start, since), min(band.end + self.interval, end)
            if stop > start:
                covered += stop - start
        return max(end - since - covered, 0.0)

    def first_writer_after(self, since: float, other_than: str | None) -> tuple[str, float] | None:
        """The first node other than ``other_than`` seen accepting writes after ``since``, and when."""
        for sample in sorted(self.snapshot(), key=lambda s: s.t):
            if sample.t >= since and sample.state.writable and sample.state.name != other_than:
                return sample.state.name, sample.t
        return None
