"""Typed parameters for the Gherkin steps: a typo fails when the step is matched."""
from __future__ import annotations

from parse import with_pattern

__all__ = ["TYPES"]


@with_pattern(r"\d+(?:\.\d+)?")
def parse_seconds(text: str) -> float:
    """A duration in seconds, fractional allowed: ``10``, ``0.5``."""
    return float(text)


@with_pattern(r"\d+")
def parse_count(text: str) -> int:
    """A whole number."""
    return int(text)


@with_pattern(r"[a-z][a-z0-9_-]*")
def parse_service(text: str) -> str:
    """A service name as written (one word); the stack says whether it exists."""
    return text


@with_pattern(r"light|steady|heavy")
def parse_level(text: str) -> str:
    """A named load level from behave.ini."""
    return text


TYPES = {"Seconds": parse_seconds, "Number": parse_seconds, "Count": parse_count, "Service": parse_service, "Level": parse_level}
