"""Typed parameters for the Gherkin steps: a typo fails when the step is matched."""
from __future__ import annotations

import re

from parse import with_pattern

__all__ = ["TYPES"]


@with_pattern(r"\d+(?:\.\d+)?")
def parse_seconds(text: str) -> float:
    """A duration in seconds, fractional allowed: ``10``, ``0.5``."""
    return float(text)


_UNITS = {"ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "s": 1.0, "second": 1.0, "seconds": 1.0,
          "minute": 60.0, "minutes": 60.0}


@with_pattern(r"\d+(?:\.\d+)? ?(?:milliseconds?|ms|seconds?|s|minutes?)")
def parse_duration(text: str) -> float:
    """A duration with its unit, in seconds: ``10 seconds``, ``1 second``, ``0.5 s``, ``250 ms``."""
    number, unit = re.match(r"([\d.]+) ?([a-z]+)", text).groups()
    return float(number) * _UNITS[unit]


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


TYPES = {"Duration": parse_duration, "Seconds": parse_seconds, "Number": parse_seconds, "Count": parse_count, "Service": parse_service, "Level": parse_level}
