"""Hostile input under load: every malformed request refused with a 4xx, and the well-formed share unharmed.

The malformed share is the history's requests with ``op`` ``malformed``
(:mod:`support.load.malformed`; the ``key`` is the form: ``bad_json``,
``wrong_types``, ``oversized``, ``slow_headers``); every other request is
well-formed. Times are ``time.monotonic()`` seconds, latencies seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from support.checks.messages import describe, origin, plural, require
from support.checks.verdict import CheckFailed
from support.load.history import OK, Request, percentile
from support.load.malformed import MALFORMED

__all__ = [
    "malformed",
    "well_formed",
    "check_malformed_refused",
    "check_well_formed_error_rate_below",
    "check_well_formed_latency_kept",
    "LATENCY_FACTOR",
    "LATENCY_SLACK",
]

#: the well-formed p99 while malformed requests are sent may be this many times the p99 before them...
LATENCY_FACTOR = 2.0
#: ...plus this many seconds (a p99 of a few dozen requests on a shared machine moves by tens of ms)
LATENCY_SLACK = 0.1


def malformed(history: Sequence[Request]) -> list[Request]:
    """The malformed share of ``history``."""
    return [r for r in history if r.op == MALFORMED]


def well_formed(history: Sequence[Request]) -> list[Request]:
    """Every request of ``history`` that is not malformed."""
    return [r for r in history if r.op != MALFORMED]


def _no_malformed() -> CheckFailed:
    return CheckFailed(
        "no malformed request was sent in this scenario: put 'Given N% of the load is malformed' before the step "
        "that starts the load, and let the load run past its baseline"
    )


def check_malformed_refused(history: Sequence[Request] | None) -> None:
    """Fail unless every malformed request was answered with a 4xx (a 2xx, a 5xx or no answer all fail it)."""
    bad_share = malformed(require(history))
    if not bad_share:
        raise _no_malformed()
    wrong = [r for r in bad_share if r.status is None or not 400 <= r.status < 500]
    if not wrong:
        return
    since = origin(history or [])
    seen = Counter((r.key, r.status if r.status is not None else (r.error or "no answer")) for r in wrong)
    listed = ", ".join(f"{kind} -> {answer} x{n}" for (kind, answer), n in sorted(seen.items(), key=str))
    raise CheckFailed(
        f"malformed input must be refused with a 4xx, never a 5xx: {len(wrong)} of "
        f"{plural(len(bad_share), 'malformed request')} were not ({listed}); first: {describe(wrong[0], since)}"
    )


def check_well_formed_error_rate_below(history: Sequence[Request] | None, percent: float) -> None:
    """Fail unless fewer than ``percent`` % of the well-formed requests were non-ok while malformed ones were sent."""
    full = require(history)
    bad_share = malformed(full)
    if not bad_share:
        raise _no_malformed()
    first = min(r.start for r in bad_share)
    good = [r for r in well_formed(full) if r.start >= first]
    failed = [r for r in good if r.outcome != OK]
    rate = 100.0 * len(failed) / len(good) if good else 0.0
    if good and rate >= percent:
        raise CheckFailed(
            f"the well-formed requests must keep their error rate beside malformed ones: {rate:.1f}% of "
            f"{plural(len(good), 'well-formed request')} failed while malformed ones were sent (bound: below "
            f"{percent:g}%); first: {describe(failed[0], origin(full))}"
        )


def check_well_formed_latency_kept(
    history: Sequence[Request] | None, factor: float = LATENCY_FACTOR, slack: float = LATENCY_SLACK
) -> None:
    """Fail when the well-formed requests' p99 latency while malformed ones were sent exceeds ``factor`` times
    their p99 before the first malformed request, plus ``slack`` seconds (both measured in the same load)."""
    full = require(history)
    bad_share = malformed(full)
    if not bad_share:
        raise _no_malformed()
    first = min(r.start for r in bad_share)
    good = well_formed(full)
    before = percentile((r.latency for r in good if r.start < first), 99)
    during = percentile((r.latency for r in good if r.start >= first), 99)
    if before is None or during is None:
        raise CheckFailed(
            "the well-formed requests' latency cannot be compared: the load needs well-formed requests both "
            "before and after the malformed share began (a baseline of at least 1 s, then more load)"
        )
    bound = factor * before + slack
    if during > bound:
        raise CheckFailed(
            f"the well-formed requests must keep their latency beside malformed ones: p99 {during * 1000:.0f} ms "
            f"while malformed requests were sent, against {before * 1000:.0f} ms before (bound: "
            f"{factor:g} x before + {slack * 1000:.0f} ms = {bound * 1000:.0f} ms)"
        )
