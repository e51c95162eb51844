"""Typed parameters for the Gherkin steps: a typo fails when the features are read, in one line.

Each pattern takes a little more than it accepts (a sign, a leading point, an
unknown level), so that a near miss reaches its converter and is refused with
the forms it takes, instead of leaving the step "undefined" with no hint.
"""

from __future__ import annotations

import re

from parse import with_pattern

__all__ = ["TYPES", "DURATION_FORMS", "NAMED_PARAMETERS"]

_NUMBER = r"[-+]?[\d.]*\d[\d.]*"
_VALID_NUMBER = re.compile(r"\d+(?:\.\d+)?")

_UNITS = {
    "ms": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "minute": 60.0,
    "minutes": 60.0,
}

#: what a duration in a step may look like, as the error message says it
DURATION_FORMS = "10 seconds, 1 second, 0.5 s, 250 ms or 2 minutes (digits before any point, no sign)"

_LEVELS = ("light", "steady", "heavy")


def _number(text: str, what: str) -> float:
    if not _VALID_NUMBER.fullmatch(text):
        raise ValueError(
            f"{text!r} is not {what}; write digits with an optional fraction, such as 10 or 0.5 "
            "(no sign, a digit before the point)"
        )
    return float(text)


@with_pattern(_NUMBER)
def parse_seconds(text: str) -> float:
    """A duration in seconds, fractional allowed: ``10``, ``0.5``."""
    return _number(text, "a number of seconds")


@with_pattern(_NUMBER + r" ?(?:milliseconds?|ms|seconds?|s|minutes?)")
def parse_duration(text: str) -> float:
    """A duration with its unit, in seconds: ``10 seconds``, ``1 second``, ``0.5 s``, ``250 ms``."""
    split = re.fullmatch(r"(\S+?) ?([a-z]+)", text)
    if split is None:  # the pattern above lets through only text this splits; a direct call may not
        raise ValueError(f"{text!r} is not a duration; write it as {DURATION_FORMS}")
    number, unit = split.groups()
    if not _VALID_NUMBER.fullmatch(number):
        raise ValueError(f"{text!r} is not a duration; write it as {DURATION_FORMS}")
    return float(number) * _UNITS[unit]


@with_pattern(_NUMBER)
def parse_number(text: str) -> float:
    """A number, fractional allowed: ``50``, ``2.5``."""
    return _number(text, "a number")


@with_pattern(_NUMBER)
def parse_count(text: str) -> int:
    """A whole number."""
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a whole number; write digits only, such as 5")
    return int(text)


@with_pattern(r"[a-z][a-z0-9_-]*")
def parse_service(text: str) -> str:
    """A service name as written (one word); the stack says whether it exists."""
    return text


@with_pattern(r"[a-z][a-z0-9_-]*")
def parse_records(text: str) -> str:
    """The plural noun of the workload's records (``users``, ``notes``); the stack file says which it takes."""
    return text


@with_pattern(r"[a-z_][a-z0-9_]*")
def parse_table(text: str) -> str:
    """A table name as written; the stack file's workload says which it takes."""
    return text


@with_pattern(r"[a-z]+")
def parse_level(text: str) -> str:
    """A named load level from behave.ini."""
    if text not in _LEVELS:
        raise ValueError(
            f"{text!r} is not a load level; use one of: {', '.join(_LEVELS)} (their rates are "
            "load_light, load_steady and load_heavy in behave.ini)"
        )
    return text


TYPES = {
    "Duration": parse_duration,
    "Seconds": parse_seconds,
    "Number": parse_number,
    "Count": parse_count,
    "Service": parse_service,
    "Level": parse_level,
    "Records": parse_records,
    "Table": parse_table,
}

#: the step parameters whose value must name something of the stack (checked when the features are read):
#: a service, the two ends of a link, the records' noun, the workload's table
NAMED_PARAMETERS = {"service": "service", "a": "link", "b": "link", "records": "records", "table": "table"}
