"""The timeline chart: window maths on numbers, and a real PNG from a hand-made history with an outage."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from support.checks.recovery import recovery
from support.evidence.chart import FAULT_RGB, SIZE_PX, Window, figure_png, timeline_figure, timeline_png, windows
from support.faults.timeline import FaultWindow
from support.load.history import FAIL, INFO, OK, Request

T0 = 5000.0  # a monotonic origin far from zero, as real ones are


def req(t: float, outcome: str = OK, latency: float = 0.01) -> Request:
    start = T0 + t
    status = {OK: 200, FAIL: 409, INFO: 503}[outcome]
    return Request("read", f"k{t:g}", start, start, start + latency, status, "", outcome)


def outage_history() -> list[Request]:
    """50 requests/s for 10 s; everything started in [4.0, 4.6) fails slowly."""
    history = []
    for i in range(500):
        t = round(i * 0.02, 6)
        bad = 4.0 <= t < 4.6
        history.append(req(t, INFO if bad else OK, 0.2 if bad else 0.005 + (i % 5) * 0.001))
    return history


# -- window maths --------------------------------------------------------------------


def test_windows_count_by_start_with_rates_per_second_and_nearest_rank_latencies() -> None:
    history = [
        req(0.0, latency=0.010),
        req(0.1, latency=0.020),
        req(0.2, FAIL, latency=0.030),
        req(0.30, latency=0.040),  # second window
        req(0.80, INFO, latency=1.0),
        req(0.9, latency=0.002),
    ]  # fourth window; third stays empty
    got = windows(history, width=0.25)
    assert [w.start for w in got] == [0.0, 0.25, 0.5, 0.75]
    assert [w.requests for w in got] == [3, 1, 0, 2]
    assert [w.errors for w in got] == [1, 0, 0, 1]
    assert [w.rps for w in got] == [12.0, 4.0, 0.0, 8.0]
    assert [w.errors_ps for w in got] == [4.0, 0.0, 0.0, 4.0]
    assert got[0].p50 == pytest.approx(0.020) and got[0].p99 == pytest.approx(0.030)
    assert got[2].p50 is None and got[2].p99 is None
    assert got[3].p50 == pytest.approx(0.002) and got[3].p99 == pytest.approx(1.0)
    assert got[1].middle == pytest.approx(0.375)


def test_windows_start_at_the_given_origin_and_reach_until() -> None:
    history = [req(1.0), req(1.6)]
    got = windows(history, width=0.5, origin=T0, until=T0 + 3.1)
    assert [w.start for w in got] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert [w.requests for w in got] == [0, 0, 1, 1, 0, 0, 0]


def test_windows_of_an_empty_history_and_a_bad_width() -> None:
    assert windows([]) == []
    with pytest.raises(ValueError):
        windows([req(0)], width=0)


def test_a_window_is_plain_numbers() -> None:
    w = Window(start=1.0, width=0.25, requests=5, errors=2, p50=0.01, p99=0.02)
    assert (w.rps, w.errors_ps, w.middle) == (20.0, 8.0, 1.125)


# -- the image ---------------------------------------------------------------------------


def _pixels(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def _fault_columns(image: Image.Image, row: int) -> list[int]:
    """The x of every pixel on ``row`` painted in the fault colour."""
    return [x for x in range(image.width) if image.getpixel((x, row)) == FAULT_RGB]


def test_chart_png_has_the_size_and_the_fault_window_where_it_happened() -> None:
    history = outage_history()
    faults = [FaultWindow("stop", "postgres", T0 + 4.0, T0 + 4.5)]
    result = recovery(history, T0 + 4.5, since=T0 + 4.0)
    figure = timeline_figure(history, faults, result, title="Postgres down under load")
    png = figure_png(figure)

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < len(png) < 500_000
    image = _pixels(png)
    assert image.size == SIZE_PX

    # where the fault window should be, in pixels, from the axes' own transform (after the drawing laid them out)
    rate_ax = figure.axes[0]
    (x0, y_low), (x1, y_high) = rate_ax.transData.transform([(4.0, 0), (4.5, rate_ax.get_ylim()[1])])
    rows = range(SIZE_PX[1] - round(y_high) + 1, SIZE_PX[1] - round(y_low))  # image rows count from the top
    shaded = {row: columns for row in rows if (columns := _fault_columns(image, row))}
    # the errors of the outage cover most of it; the shade shows above them
    assert len(shaded) > len(rows) / 10, "the fault window is not shaded in the rate panel"
    assert abs(min(min(c) for c in shaded.values()) - x0) <= 3
    assert abs(max(max(c) for c in shaded.values()) - x1) <= 3
    # and nothing of that colour outside the window
    assert all(x0 - 3 <= x <= x1 + 3 for c in shaded.values() for x in c)


def test_without_a_fault_nothing_is_shaded() -> None:
    image = _pixels(timeline_png(outage_history(), []))
    assert image.size == SIZE_PX
    assert not any(pixel == FAULT_RGB for pixel in image.get_flattened_data())


def test_the_fault_is_labelled_and_the_recovery_marked_with_its_time() -> None:
    history = outage_history()
    faults = [FaultWindow("restart", "postgres", T0 + 4.0, T0 + 4.2, instant=True)]
    result = recovery(history, T0 + 4.0, since=T0 + 4.0)
    assert result.recovered and result.recovery_time == pytest.approx(0.6)
    figure = timeline_figure(history, faults, result)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert "postgres: restart (200 ms)" in texts
    assert "recovered after 600 ms" in texts
    assert figure.axes[0].get_ylabel() == "requests per second (1/s)"
    assert figure.axes[1].get_ylabel() == "latency (ms, log scale)"
    assert figure.axes[1].get_xlabel().startswith("seconds since the load started")


def test_a_service_that_never_recovers_says_so_on_the_chart() -> None:
    history = [req(t / 10, OK if t < 40 else INFO) for t in range(100)]
    faults = [FaultWindow("kill (SIGKILL)", "api", T0 + 4.0, T0 + 4.0, instant=True)]
    result = recovery(history, T0 + 4.0)
    assert not result.recovered
    figure = timeline_figure(history, faults, result)
    assert "no recovery observed" in [t.get_text() for t in figure.axes[0].texts]
