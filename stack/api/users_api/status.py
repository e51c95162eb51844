"""Logging the moments the database becomes unreachable and reachable again.

One line per transition, not one per failed request: during an outage under
load the log stays readable and the outage's start and end are easy to find.
"""
from __future__ import annotations

import logging
import threading
import time

__all__ = ["Reachability"]


class Reachability:
    """Tracks whether the last database contact worked; logs only the changes."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._reachable: bool | None = None  # unknown until the first contact
        self._since = time.monotonic()

    @property
    def reachable(self) -> bool | None:
        """The outcome of the last contact; ``None`` before any."""
        return self._reachable

    def up(self) -> None:
        """Record a successful contact (thread-safe)."""
        with self._lock:
            if self._reachable is True:
                return
            now = time.monotonic()
            if self._reachable is False:
                self._log.warning("database reachable again after %.2f s", now - self._since)
            else:
                self._log.info("database reachable")
            self._reachable, self._since = True, now

    def down(self, detail: str) -> None:
        """Record a failed contact with a short, password-free reason (thread-safe)."""
        with self._lock:
            if self._reachable is False:
                return
            self._log.warning("database unreachable: %s", detail)
            self._reachable, self._since = False, time.monotonic()
