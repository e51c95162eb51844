"""A live progress line on the terminal while a load runs or a recovery is awaited.

The line goes to the real standard error (behave captures ``sys.stderr`` while
steps run) and only when it is a terminal, unless forced with the environment
variable ``CHAOS_PROGRESS=always`` (``never`` turns it off). It is redrawn in
place with a carriage return; :meth:`ProgressLine.pause` erases it so that
behave's own output never lands in the middle of it.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

__all__ = ["ProgressLine", "progress_enabled", "describe_load", "describe_state", "MODES"]

MODES = ("auto", "always", "never")
_ERASE = "\r\x1b[K"


def progress_enabled(stream: TextIO | None, mode: str | None = None) -> bool:
    """Whether to draw: ``mode`` (default ``$CHAOS_PROGRESS``, else ``auto``) ``always``, ``never``,
    or ``auto`` = only when ``stream`` is a terminal."""
    mode = (mode or os.environ.get("CHAOS_PROGRESS") or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(f"CHAOS_PROGRESS={mode!r}: use one of {', '.join(MODES)}")
    if mode == "never" or stream is None:
        return False
    if mode == "always":
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def describe_load(
    progress: Mapping[str, Any],
    watch: Mapping[str, Any] | None = None,
    faults: int = 0,
    min_successes: int | None = None,
) -> str:
    """One line from a load's progress dict (``t`` s, ``sent``, ``ok``, ``errors``, ``rps``,
    ``in_flight``, ``lag_p99_ms``, and ``workers`` with the locust engine) and, once recovery is
    awaited, its live watch figures."""
    if not progress:
        return "load starting…"
    sent = int(progress.get("sent", 0))
    errors = int(progress.get("errors", 0))
    share = f" ({errors / sent * 100:.1f}%)" if sent else ""
    parts = [
        f"load {float(progress.get('t', 0.0)):5.1f} s",
        f"{float(progress.get('rps', 0.0)):6.1f} req/s",
        f"{sent} sent",
        f"{errors} errors{share}",
        f"{int(progress.get('in_flight', 0))} in flight",
    ]
    workers = progress.get("workers")
    if workers is not None:  # the locust engine: how many Locust workers are connected
        parts.insert(1, f"locust {int(workers)} worker{'s' if int(workers) != 1 else ''}")
    lag = progress.get("lag_p99_ms")
    if lag is not None:
        parts.append(f"lag p99 {float(lag):.0f} ms")
    if faults:
        parts.append(f"{faults} fault{'s' if faults != 1 else ''} injected")
    if watch:
        oks = int(watch.get("oks", 0))
        need = f"/{min_successes}" if min_successes else ""
        parts.append(f"awaiting recovery: {oks}{need} ok since the last failure")
    return " · ".join(parts)


def describe_state(state: Any) -> str | None:
    """The line for a scenario (a :class:`support.run.scenario.ScenarioState`): None when no load runs."""
    load = getattr(state, "load", None)
    if load is None or getattr(state, "history", None) is not None:
        return None
    ledger = getattr(state, "ledger", None)
    faults = len(ledger.windows()) if ledger is not None else 0
    settings = getattr(state, "settings", None)
    return describe_load(load.progress, load.watch, faults, getattr(settings, "recovery_min_successes", None))


class ProgressLine:
    """Redraws ``describe(subject)`` every ``interval`` s on ``stream`` while following a subject.

    ``follow(subject)`` starts (or resumes) drawing, ``pause()`` erases the
    line and stops drawing until the next ``follow``, ``close()`` ends the
    thread. When disabled (see :func:`progress_enabled`) every call is a no-op.
    """

    def __init__(
        self,
        describe: Callable[[Any], str | None] = describe_state,
        stream: TextIO | None = None,
        mode: str | None = None,
        interval: float = 0.5,
    ) -> None:
        # sys.__stderr__ is None without a console (pythonw): progress is then disabled, never drawn
        self.stream: TextIO | None = stream if stream is not None else sys.__stderr__
        self.enabled = progress_enabled(self.stream, mode)
        self.interval = interval
        self._describe = describe
        self._lock = threading.Lock()
        self._subject: Any = None
        self._drawn = False
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def follow(self, subject: Any) -> None:
        """Draw the line for ``subject`` from now on (None pauses)."""
        if not self.enabled:
            return
        with self._lock:
            self._subject = subject
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="progress-line", daemon=True)
                self._thread.start()
        self._wake.set()

    def pause(self) -> None:
        """Erase the line now and draw nothing until the next :meth:`follow`."""
        if not self.enabled:
            return
        with self._lock:
            self._subject = None
            self._erase()

    def close(self) -> None:
        """Erase the line and stop the thread (idempotent)."""
        if not self.enabled:
            return
        with self._lock:
            self._closed = True
            self._subject = None
            self._erase()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.interval * 4))

    def draw_once(self) -> str | None:
        """Draw the current line (also what the thread does each tick); returns the text drawn."""
        with self._lock:
            if self._subject is None or self._closed or self.stream is None:
                return None
            try:
                text = self._describe(self._subject)
            except Exception as error:  # noqa: BLE001 - a progress line must never break a scenario
                text = f"progress unavailable: {type(error).__name__}"
            if not text:
                self._erase()
                return None
            width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
            if len(text) > width:  # a wrapped line cannot be redrawn in place
                text = text[: width - 1] + "…"
            self.stream.write(_ERASE + text)
            self.stream.flush()
            self._drawn = True
            return text

    def _erase(self) -> None:
        if self._drawn and self.stream is not None:
            self.stream.write(_ERASE)
            self.stream.flush()
            self._drawn = False

    def _run(self) -> None:
        while not self._closed:
            self.draw_once()
            # pacing the redraws, not synchronising with anything
            self._wake.wait(self.interval)
            self._wake.clear()
