"""How every judgement words its failures: times, keys, requests, and the suite-misuse sentences.

Messages give times as seconds into the load (from the first request's start),
since monotonic readings mean nothing to a reader. ``support.evidence.report_meta``
sorts failures by these sentences, so a change of wording belongs here and there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from support.checks.verdict import CheckFailed
from support.load.history import Request

__all__ = [
    "NO_LOAD",
    "NO_FAULT",
    "no_fault",
    "KEYS_AT_MOST",
    "REQUESTS_AT_MOST",
    "require",
    "origin",
    "seconds",
    "keys",
    "describe",
    "listing",
    "plural",
]

NO_LOAD = (
    "no load ran in this scenario: add a 'Given a steady load of N requests per second' (or 'Given heavy"
    " load', 'Given N concurrent users') step before the steps that judge it"
)
#: the start of every message about a judgement that needs a fault in a scenario that injected none
NO_FAULT = "no fault was injected in this scenario"
#: how many keys a message lists before "and N more"
KEYS_AT_MOST = 10
#: how many requests a message describes in full before "and N more"
REQUESTS_AT_MOST = 3


def no_fault(so: str) -> str:
    """The message for a judgement that needs a fault: ``NO_FAULT`` then ``, so there is <so>``."""
    return f"{NO_FAULT}, so there is {so}"


def require(history: Sequence[Request] | None) -> Sequence[Request]:
    """The history itself, or :class:`CheckFailed` with :data:`NO_LOAD` when there is none."""
    if not history:
        raise CheckFailed(NO_LOAD)
    return history


def origin(history: Sequence[Request]) -> float:
    """The first request's start (monotonic s): messages count time from it."""
    return min(r.start for r in history)


def seconds(value: float) -> str:
    """Seconds for a message: one decimal from 1 s up, milliseconds' precision below."""
    return f"{value:.1f} s" if abs(value) >= 1 else f"{value:.3f} s"


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, with an ``s`` unless ``n`` is 1 ("1 request", "3 requests")."""
    return f"{n} {word}{'s' if n != 1 else ''}"


def keys(listed: Sequence[str]) -> str:
    """The first :data:`KEYS_AT_MOST` keys, comma-separated, then how many more there were."""
    shown = ", ".join(listed[:KEYS_AT_MOST])
    return shown + (f" and {len(listed) - KEYS_AT_MOST} more" if len(listed) > KEYS_AT_MOST else "")


def describe(r: Request, since: float) -> str:
    """One request: its op and key, its start in seconds after ``since``, its answer and latency."""
    answer = f"status {r.status}" if r.status is not None else "no answer"
    error = f", {r.error}" if r.error else ""
    return f"{r.op} {r.key} at {seconds(r.start - since)} ({answer}{error}, {seconds(r.latency)})"


def listing(requests: Sequence[Request], since: float) -> str:
    """How many requests, counted by status (or error), then the first :data:`REQUESTS_AT_MOST` described."""
    shown = "; ".join(describe(r, since) for r in requests[:REQUESTS_AT_MOST])
    more = f" and {len(requests) - REQUESTS_AT_MOST} more" if len(requests) > REQUESTS_AT_MOST else ""
    counts = Counter(r.status if r.status is not None else (r.error or "no answer") for r in requests)
    return f"{len(requests)} ({', '.join(f'{k} x{n}' for k, n in counts.most_common())}): {shown}{more}"
