"""The run's exit status: 130 after SIGINT, 143 after SIGTERM (128 + the signal), 2 for a run that proved nothing.

behave exits 1 for any failure, an interrupt included, and 0 for a run that
executed no scenario. The status is set once behave has finished (its
formatters closed, its reports written): at interpreter exit, where nothing of
the run is left to do.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys

__all__ = ["record_interrupts", "exit_status", "fail_run"]

_state: dict[str, int] = {}
_handlers: set[object] = set()  # the handlers installed here, so a second call does not wrap its own


def record_interrupts(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> None:
    """Remember which signal interrupted the run, then let the handler already installed act on it."""
    for sig in signals:
        previous = signal.getsignal(sig)
        if previous in _handlers or previous == signal.SIG_IGN:
            continue  # installed already (a second before_all in the same process), or ignored on purpose

        def handler(signum, frame, previous=previous):
            _state.setdefault("signal", signum)
            _exit_at_the_end()
            if callable(previous):
                return previous(signum, frame)
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

        _handlers.add(handler)
        signal.signal(sig, handler)


def fail_run(status: int = 2) -> None:
    """Make the run exit with ``status`` (unless a signal's status applies) once behave is done."""
    _state.setdefault("status", status)
    _exit_at_the_end()


def exit_status() -> int | None:
    """The status the run will exit with, or None for behave's own."""
    if "signal" in _state:
        return 128 + _state["signal"]
    return _state.get("status")


def _exit_at_the_end() -> None:
    if not _state.get("registered"):
        _state["registered"] = 1
        atexit.register(_exit)


def _exit() -> None:
    status = exit_status()
    if status is None:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)  # the only way to replace the status behave passed to sys.exit
