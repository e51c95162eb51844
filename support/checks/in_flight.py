"""Graceful restarts: were the requests in flight at the stop signal finished, and did failures stay in the drain window?

Times are ``time.monotonic()`` seconds, the fault's moments
(:class:`support.faults.graceful.GracefulRestart`):

* *in flight* at the stop signal: a request that started before ``signalled_at``
  and ended after it (its answer, or its client timeout, came later);
* *dropped*: an in-flight request that got no HTTP answer at all (a reset, an
  EOF, a timeout): the service took it and never answered it. An in-flight
  request answered with any status was not dropped (a 503 says "not applied");
* the *drain window*: from ``signalled_at`` to ``ready_at`` (the service ready
  again). A request that started in it may fail (nothing listens for a while);
  one that started before it and was not in flight, or after it, may not.

A history with no request in flight at the signal proves nothing and fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from support.checks.messages import listing, plural, require, seconds
from support.checks.verdict import CheckFailed
from support.faults.base import Fault
from support.faults.graceful import GracefulRestart
from support.load.history import OK, Request

__all__ = ["Drain", "judge_drain", "check_no_in_flight_dropped", "last_graceful_restart"]


@dataclass(frozen=True)
class Drain:
    """What a graceful restart did to the load: the requests in flight, those dropped, failures outside the window."""

    in_flight: list[Request]
    dropped: list[Request]
    outside: list[Request]
    window: tuple[float, float]


def last_graceful_restart(faults: Sequence[Fault]) -> GracefulRestart:
    """The scenario's last graceful restart; :class:`CheckFailed` when it made none."""
    restarts = [f for f in faults if isinstance(f, GracefulRestart) and f.signalled_at is not None]
    if not restarts:
        raise CheckFailed("no service was restarted gracefully in this scenario, so there is no drain to judge")
    return restarts[-1]


def judge_drain(history: Sequence[Request], signalled_at: float, ready_at: float) -> Drain:
    """The in-flight, dropped and out-of-window requests of ``history`` for a stop signal at ``signalled_at``."""
    in_flight = [r for r in history if r.start < signalled_at < r.end]
    taken = {id(r) for r in in_flight}
    dropped = [r for r in in_flight if r.status is None]
    outside = [r for r in history if r.outcome != OK and id(r) not in taken and not signalled_at <= r.start <= ready_at]
    return Drain(in_flight, dropped, outside, (signalled_at, ready_at))


def check_no_in_flight_dropped(history: Sequence[Request] | None, restart: GracefulRestart) -> Drain:
    """Every request in flight at ``restart``'s stop signal was answered, and no failure fell outside its drain window."""
    history = require(history)
    signalled, ready = restart.signalled_at, restart.ready_at
    if signalled is None or ready is None:
        raise CheckFailed(f"the graceful restart of {restart.target} did not finish, so there is no drain to judge")
    drain = judge_drain(history, signalled, ready)
    who = restart.target
    if not drain.in_flight:
        raise CheckFailed(
            f"no request was in flight when {who} got its stop signal ({plural(len(history), 'request')} in the "
            "load): the scenario proves nothing; make requests slower or the load heavier"
        )
    problems = []
    if drain.dropped:
        problems.append(
            f"{len(drain.dropped)} of the {plural(len(drain.in_flight), 'request')} in flight when {who} got its stop "
            f"signal {'was' if len(drain.dropped) == 1 else 'were'} dropped without an answer "
            f"({listing(drain.dropped, signalled)}): a graceful stop must finish the requests it has accepted"
        )
    if drain.outside:
        problems.append(
            f"{plural(len(drain.outside), 'request')} failed outside the drain window (from the stop signal to {who} "
            f"ready again, {seconds(ready - signalled)}): {listing(drain.outside, signalled)}"
        )
    if problems:
        raise CheckFailed("; ".join(problems) + f" ({restart.heal_note})" if restart.heal_note else "; ".join(problems))
    return drain
