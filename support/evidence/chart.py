"""The timeline chart of a scenario: what the load saw while the faults happened.

Two panels share one time axis, in seconds since the load's first request:
requests and errors per second, and p50/p99 latency in milliseconds (log
scale), both counted in short windows by request *start* (as the checkers
place requests). Fault windows are shaded and labelled; the recovery point is
marked with the measured recovery time.

Rendering uses matplotlib's Agg canvas directly (no pyplot, no global backend
switch), so it is safe in a test run and in a suite that never opens a display.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from support.faults.timeline import FaultWindow
from support.load.history import OK, Request, percentile

if TYPE_CHECKING:  # matplotlib is imported only when a chart is drawn (it costs ~0.3 s)
    from matplotlib.figure import Figure

    from support.checks.recovery import Recovery
    from support.checks.repeats import RepeatGroup

__all__ = [
    "WINDOW_S",
    "Window",
    "windows",
    "timeline_figure",
    "figure_png",
    "timeline_png",
    "FAULT_RGB",
    "SIZE_PX",
    "seconds_text",
    "repeats_png",
]

#: width of a counting window, seconds
WINDOW_S = 0.25
#: the fault shading, opaque so that it can be found in the image (RGB 0..255)
FAULT_RGB = (250, 205, 205)
#: image size in pixels (width, height)
SIZE_PX = (1200, 680)
_DPI = 100
_RECOVERY_COLOUR = "#1a9641"
_REQUESTS_COLOUR = "#2c7bb6"
_ERRORS_COLOUR = "#d7191c"
_FAULT_EDGE = "#b2182b"


@dataclass(frozen=True)
class Window:
    """The requests that *started* in ``[start, start + width)``, seconds since ``origin``.

    ``rps`` and ``errors_ps`` are per second (count / width); an error is a
    non-ok request (``fail`` or ``info``); ``p50``/``p99`` are nearest-rank
    latency percentiles in seconds over every request of the window, failures
    included (None for an empty window).
    """

    start: float
    width: float
    requests: int
    errors: int
    p50: float | None
    p99: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.width

    @property
    def errors_ps(self) -> float:
        return self.errors / self.width

    @property
    def middle(self) -> float:
        return self.start + self.width / 2


def windows(
    history: Sequence[Request], width: float = WINDOW_S, origin: float | None = None, until: float | None = None
) -> list[Window]:
    """Consecutive windows of ``width`` s from ``origin`` (default: the first start, monotonic s)
    to the last start (or to monotonic ``until`` if later), empty windows included."""
    if width <= 0:
        raise ValueError(f"width must be > 0 s, not {width}")
    if not history:
        return []
    origin = min(r.start for r in history) if origin is None else origin
    last = max(r.start for r in history)
    if until is not None:
        last = max(last, until)
    count = int((last - origin) // width) + 1
    buckets: list[list[Request]] = [[] for _ in range(count)]
    for r in history:
        index = int((r.start - origin) // width)
        if 0 <= index < count:
            buckets[index].append(r)
    out = []
    for i, members in enumerate(buckets):
        latencies = [r.latency for r in members]
        out.append(
            Window(
                start=i * width,
                width=width,
                requests=len(members),
                errors=sum(r.outcome != OK for r in members),
                p50=percentile(latencies, 50),
                p99=percentile(latencies, 99),
            )
        )
    return out


def seconds_text(value: float) -> str:
    """A duration for a label: milliseconds below 1 s, else seconds with one decimal."""
    return f"{value:.1f} s" if abs(value) >= 1 else f"{value * 1000:.0f} ms"


def timeline_figure(
    history: Sequence[Request],
    faults: Sequence[FaultWindow],
    recovery: Recovery | None = None,
    title: str = "",
    subtitle: str = "",
    width: float = WINDOW_S,
    primaries: Sequence[tuple[str, float, float]] = (),
) -> Figure:
    """The chart as a matplotlib Figure (``SIZE_PX`` pixels at its dpi); see the module doc. ``primaries``: a
    replicated database's ``(node, start, end)`` writable bands (monotonic s), drawn as a bar per node at the top."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure = Figure(figsize=(SIZE_PX[0] / _DPI, SIZE_PX[1] / _DPI), dpi=_DPI, layout="constrained")
    rate_ax, latency_ax = figure.subplots(2, 1, sharex=True, height_ratios=[1.15, 1])
    if title:
        figure.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=12)

    origin = min(r.start for r in history) if history else 0.0
    observed_until = max(r.end for r in history) if history else 0.0
    ends = [w.healed for w in faults if w.healed is not None] + [observed_until]
    win = windows(history, width, origin=origin, until=max(ends))
    x = [w.middle for w in win]
    x_end = max([win[-1].start + width] if win else [1.0])

    rate_ax.plot(
        x,
        [w.rps for w in win],
        color=_REQUESTS_COLOUR,
        linewidth=1.6,
        label="requests/s (launched)",
        drawstyle="steps-mid",
        zorder=3,
    )
    rate_ax.fill_between(
        x,
        [w.errors_ps for w in win],
        color=_ERRORS_COLOUR,
        alpha=0.55,
        step="mid",
        linewidth=0,
        label="errors/s (fail + unknown)",
        zorder=3,
    )
    rate_ax.set_ylabel("requests per second (1/s)")
    rate_ax.set_ylim(bottom=0, top=max([w.rps for w in win] + [1.0]) * 1.3)

    ms = 1000.0
    p50 = [w.p50 * ms if w.p50 is not None else math.nan for w in win]
    p99 = [w.p99 * ms if w.p99 is not None else math.nan for w in win]
    latency_ax.plot(x, p99, color="#fdae61", linewidth=1.6, label="p99 latency", marker=".", markersize=3, zorder=3)
    latency_ax.plot(x, p50, color="#5e3c99", linewidth=1.6, label="p50 latency", marker=".", markersize=3, zorder=3)
    latency_ax.set_yscale("log")
    # plain numbers at 1-2-5 steps read better than 10^n and its minor labels
    latency_ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    latency_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    latency_ax.yaxis.set_minor_formatter(NullFormatter())
    latency_ax.set_ylabel("latency (ms, log scale)")
    latency_ax.set_xlabel(f"seconds since the load started (windows of {width * 1000:g} ms, by request start)")
    latency_ax.set_xlim(0, x_end)

    for ax in (rate_ax, latency_ax):
        ax.grid(True, which="major", color="#dddddd", linewidth=0.8, zorder=1)
        ax.set_axisbelow(True)
    _draw_faults(rate_ax, latency_ax, faults, origin, x_end)
    _draw_recovery(rate_ax, latency_ax, recovery, origin, bool(faults))
    _draw_primaries(rate_ax, primaries, origin)
    rate_ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    latency_ax.legend(loc="best", fontsize=9, framealpha=0.9)
    return figure


_PRIMARY_COLOURS = ("#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")


def _draw_primaries(rate_ax, primaries: Sequence[tuple[str, float, float]], origin: float) -> None:
    """Which node accepted writes when: a bar per band just under the top of the rate axis, named by its node."""
    nodes = sorted({node for node, _, _ in primaries})
    top = rate_ax.get_ylim()[1]
    for node, start, end in primaries:
        colour = _PRIMARY_COLOURS[nodes.index(node) % len(_PRIMARY_COLOURS)]
        y = top * 0.95
        rate_ax.hlines(y, start - origin, end - origin, colors=colour, linewidth=7, zorder=4)
        rate_ax.annotate(f"{node} primary", (start - origin, y), xytext=(2, -14), textcoords="offset points",
                         fontsize=8, color=colour, zorder=5)  # fmt: skip


def _draw_faults(rate_ax, latency_ax, faults: Sequence[FaultWindow], origin: float, x_end: float) -> None:
    colour = tuple(c / 255 for c in FAULT_RGB)
    for i, fault in enumerate(faults):
        start = fault.injected - origin
        end = (fault.healed - origin) if fault.healed is not None else x_end
        for ax in (rate_ax, latency_ax):
            # opaque and behind everything, so the data stays readable and the shade is findable
            ax.axvspan(start, end, color=colour, zorder=0, linewidth=0)
            ax.axvline(start, color=_FAULT_EDGE, linewidth=1.0, linestyle="-", zorder=2)
        held = "never healed" if fault.healed is None else seconds_text(fault.healed - fault.injected)
        label = f"{fault.target}: {fault.name} ({held})"
        rate_ax.annotate(
            label,
            xy=(start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -14 - 14 * i),
            textcoords="offset points",
            fontsize=9,
            color=_FAULT_EDGE,
            fontweight="bold",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )


def _draw_recovery(rate_ax, latency_ax, recovery: Recovery | None, origin: float, had_faults: bool) -> None:
    if recovery is None or not had_faults:
        return
    if recovery.recovered and recovery.recovered_at is not None:
        at = recovery.recovered_at - origin
        for ax in (rate_ax, latency_ax):
            ax.axvline(at, color=_RECOVERY_COLOUR, linewidth=2.0, linestyle="--", zorder=4)
        text = f"recovered after {seconds_text(recovery.recovery_time or 0.0)}"
        # near the right edge the label goes to the left of the line, so it is never cut off
        left, right = rate_ax.get_xlim()
        on_left = at > left + 0.75 * (right - left)
        rate_ax.annotate(
            text,
            xy=(at, 0.5),
            xycoords=("data", "axes fraction"),
            xytext=(-6 if on_left else 6, 0),
            ha="right" if on_left else "left",
            textcoords="offset points",
            fontsize=10,
            color=_RECOVERY_COLOUR,
            fontweight="bold",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": _RECOVERY_COLOUR, "alpha": 0.9},
        )
        if recovery.reference is not None and (recovery.recovery_time or 0) > 0:
            rate_ax.annotate(
                "",
                xy=(at, 0.42),
                xytext=(recovery.reference - origin, 0.42),
                xycoords=("data", "axes fraction"),
                textcoords=("data", "axes fraction"),
                arrowprops={"arrowstyle": "<->", "color": _RECOVERY_COLOUR, "linewidth": 1.5},
                zorder=5,
            )
    else:
        rate_ax.text(
            0.01,
            0.5,
            "no recovery observed",
            transform=rate_ax.transAxes,
            fontsize=11,
            color=_ERRORS_COLOUR,
            fontweight="bold",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": _ERRORS_COLOUR},
        )


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes, through the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    out = io.BytesIO()
    canvas.print_png(out)
    return out.getvalue()


def timeline_png(
    history: Sequence[Request],
    faults: Sequence[FaultWindow],
    recovery: Recovery | None = None,
    title: str = "",
    subtitle: str = "",
    width: float = WINDOW_S,
    primaries: Sequence[tuple[str, float, float]] = (),
) -> bytes:
    """The chart of :func:`timeline_figure` as PNG bytes (about 60-150 kB)."""
    return figure_png(timeline_figure(history, faults, recovery, title, subtitle, width, primaries))


def repeats_png(group: RepeatGroup, title: str = "") -> bytes:
    """A small chart of a repeated scenario: one panel per measure (recovery and outage in seconds,
    error rate in percent, lost writes), each run a dot (green passed, red failed) over its run number,
    p50 and p95 as lines; a run that never recovered is a red cross at the top of the recovery panel."""
    from matplotlib.figure import Figure

    from support.checks.repeats import MEASURES

    figure = Figure(figsize=(8.0, 2.6), dpi=100)
    axes = figure.subplots(1, len(MEASURES))
    runs = [o.run for o in group.outcomes]
    for ax, (name, label, unit), d in zip(axes, MEASURES, group.distributions().values()):
        points = [(o.run, getattr(o, name), o.passed) for o in group.outcomes if getattr(o, name) is not None]
        for run, value, passed in points:
            ax.plot(run, value, "o", color="#2e7d32" if passed else "#c62828", markersize=5)
        if d is not None:
            ax.axhline(d.p50, color="#555555", linewidth=0.8, linestyle="--", label="p50")
            ax.axhline(d.p95, color="#e65100", linewidth=0.8, linestyle=":", label="p95")
        if name == "recovery_time_s":
            top = max([v for _, v, _ in points], default=1.0) * 1.1 or 1.0
            for o in group.outcomes:
                if o.recovered is False:
                    ax.plot(o.run, top, "x", color="#c62828", markersize=7)
        ax.set_title(f"{label} ({unit})" if unit else label, fontsize=9)
        ax.set_xticks(runs or [1])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("run", fontsize=8)
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=6, loc="lower right")
    heading = f"{title} · " if title else ""
    figure.suptitle(f"{heading}{group.verdicts()}"[:140], fontsize=9)
    figure.tight_layout()
    return figure_png(figure)
