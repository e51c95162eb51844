"""What the native worker and the Locust master share of the load protocol: the commands, the tally, the history.

Both load processes (:mod:`support.load.worker`, :mod:`support.load.locust_master`)
speak the same protocol to the controller (:class:`support.load.controller.LoadRun`);
this module is the part of it they would otherwise each write again.

Commands, one a stdin line:

- ``stop``: stop launching, wait for the open requests, write the history;
- ``watch <t> [<min_successes> <min_span>]``: from now on apply the recovery rule
  (:class:`support.load.recovery.RecoveryRule`) live, to the requests that started
  at or after monotonic ``t`` s, over ``min_successes`` ok requests spanning
  ``min_span`` s (the rule's defaults when left out).

Anything else is ignored; a ``watch`` that does not parse is ignored with a line
on stderr that says so. A malformed request (:data:`support.load.malformed.MALFORMED`,
refused on purpose by a sound API) is no outage: the rule never counts it, neither
in the replay of the requests completed before the ``watch`` nor live after it.

The tally (:class:`Tally`) holds the completed requests as plain tuples in
:class:`support.load.history.Request`'s field order (cheap to make, and the
garbage collector stops tracking tuples of atoms, so a long history does not
lengthen its pauses, which would show up as lag), their counts for the progress
lines, and the live watch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from support.load.history import FAIL, OK, Request, write_csv
from support.load.malformed import MALFORMED
from support.load.recovery import MIN_SPAN, MIN_SUCCESSES, RecoveryRule

__all__ = ["STOP", "Tally", "read_command", "parse_watch", "feed"]

STOP = "stop"
#: where a record holds what the rule and the tally read
_FIELDS = [f.name for f in fields(Request)]
_OP, _START, _OUTCOME = _FIELDS.index("op"), _FIELDS.index("start"), _FIELDS.index("outcome")


def feed(rule: RecoveryRule | None, op: str, start: float, outcome: str) -> None:
    """Count one completed request (started at monotonic ``start``) toward ``rule``; None: not watched yet."""
    if rule is not None and op != MALFORMED:  # a refused malformed request is no outage
        rule.add(start, outcome == OK)


def parse_watch(words: Sequence[str], records: Iterable[Sequence[Any]]) -> RecoveryRule:
    """The rule a ``watch`` command (``words``: its line split) asks for, fed the ``records`` completed before it.

    ValueError, saying what is expected, for words that are not such a command.
    """
    if not words or words[0] != "watch" or len(words) not in (2, 4):
        raise ValueError(f"expected 'watch <t> [<min_successes> <min_span>]', got {' '.join(words)!r}")
    after = float(words[1])
    min_successes, min_span = (int(words[2]), float(words[3])) if len(words) == 4 else (MIN_SUCCESSES, MIN_SPAN)
    rule = RecoveryRule(after, min_successes, min_span)
    for record in records:
        feed(rule, record[_OP], record[_START], record[_OUTCOME])
    return rule


def read_command(line: str, records: Iterable[Sequence[Any]]) -> RecoveryRule | str | None:
    """What one stdin ``line`` asks: :data:`STOP`, a new watch's rule (fed ``records``), or None (ignore it)."""
    words = line.split()
    if words and words[0] == STOP:
        return STOP
    if words and words[0] == "watch":
        try:
            return parse_watch(words, records)
        except ValueError:
            print(f"loadgen: ignored bad command {line!r}", file=sys.stderr)
    return None


class Tally:
    """The completed requests of one load process, their counts by outcome, and the live watch (None until one)."""

    __slots__ = ("records", "ok", "fail", "info", "window_done", "watch")

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []
        self.ok = self.fail = self.info = 0
        self.window_done = 0  # completed since the last progress line
        self.watch: RecoveryRule | None = None

    def add(self, record: tuple[Any, ...]) -> None:
        """Keep one completed request (a row in :class:`Request`'s field order), count it, feed the watch."""
        self.records.append(record)
        self.window_done += 1
        outcome = record[_OUTCOME]
        if outcome == OK:
            self.ok += 1
        elif outcome == FAIL:
            self.fail += 1
        else:
            self.info += 1
        feed(self.watch, record[_OP], record[_START], outcome)

    def command(self, line: str) -> bool:
        """Apply one stdin ``line``: a ``watch`` replaces the watch; True when it asks to stop."""
        asked = read_command(line, self.records)  # a watch is fed the requests completed before it
        if isinstance(asked, RecoveryRule):
            self.watch = asked
        return asked == STOP

    def progress(self, elapsed: float) -> dict[str, Any]:
        """The counts of a progress line, ``rps`` over the ``elapsed`` s since the last one (whose window ends)."""
        done, self.window_done = self.window_done, 0
        return {
            "ok": self.ok,
            "errors": self.fail + self.info,
            "fail": self.fail,
            "info": self.info,
            "rps": round(done / elapsed, 1),
        }

    def write_history(self, output: Path) -> int:
        """Write the history to ``output`` sorted by start, in :func:`support.load.history.to_csv`'s format."""
        records = sorted(self.records, key=lambda record: record[_START])
        tmp = output.with_name(output.name + ".tmp")
        with open(tmp, "w", newline="") as out:
            # straight from the tuples: to_csv's dataclasses.astuple deep-copies every field
            write_csv(out, records)
        tmp.replace(output)  # the controller never sees a half-written file
        return len(records)

    def finish(self, output: Path) -> dict[str, Any]:
        """Write the history to ``output`` and give the ``done`` line's common part: the path and the counts."""
        count = self.write_history(output)
        return {
            "done": True,
            "requests": count,
            "path": str(output),
            "ok": self.ok,
            "fail": self.fail,
            "info": self.info,
        }
