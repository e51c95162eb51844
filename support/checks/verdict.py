"""The one exception a failed property raises."""

from __future__ import annotations

__all__ = ["CheckFailed"]


class CheckFailed(AssertionError):
    """A resilience property did not hold; the message names it and the figures that broke it."""
