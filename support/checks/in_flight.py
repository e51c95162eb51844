"""Graceful restarts: were the requests in flight at the stop signal finished, and did failures stay in the drain window?

Times are ``time.monotonic()`` seconds, the fault's moments
(:class:`support.faults.graceful.GracefulRestart`):

* *in flight* at the stop signal: a request that started before ``signalled_at``
  and ended after it (its answer, or its client timeout, came later);
* *dropped*: an in-flight request that got no HTTP answer at all (a reset, an
  EOF, a timeout): the service took it and never answered it; through a
  balancer, a 502 or 504 says the same (the balancer's, for the replica behind
  it that gave no answer). An in-flight request answered with any other status
  was not dropped (a 503 says "not applied");
* the *drain window*: from ``signalled_at`` to ``ready_at`` (the service ready
  again). A request that started in it may fail (nothing listens for a while);
  one that started before it and was not in flight, or after it, may not.

A rolling restart (:class:`support.faults.graceful.RollingRestart`) is judged at
each replica's stop signal, with a drain window per replica (from its signal to
the balancer sending it requests again).

A history with no request in flight at the signal proves nothing and fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from support.checks.messages import listing, plural, require, seconds
from support.checks.verdict import CheckFailed
from support.faults.base import Fault
from support.faults.graceful import GracefulRestart, RollingRestart
from support.load.history import OK, Request

__all__ = ["Drain", "judge_drain", "check_no_in_flight_dropped", "last_graceful_restart", "graceful_restarts"]

#: a balancer's answers for a request its upstream took and never answered (Bad Gateway, Gateway Timeout)
GATEWAY_DROPPED = (502, 504)


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


def graceful_restarts(faults: Sequence[Fault]) -> list[GracefulRestart]:
    """The scenario's last graceful restart: one service's, or each replica's of a rolling restart that got to
    its stop signal; :class:`CheckFailed` when it made none."""
    for fault in reversed(faults):
        if isinstance(fault, RollingRestart):
            restarts = [r for r in fault.restarts if r.signalled_at is not None]
            if restarts:
                return restarts
        elif isinstance(fault, GracefulRestart) and fault.signalled_at is not None:
            return [fault]
    raise CheckFailed("no service was restarted gracefully in this scenario, so there is no drain to judge")


def judge_drain(
    history: Sequence[Request], signalled_at: float, ready_at: float, others: Sequence[tuple[float, float]] = ()
) -> Drain:
    """The in-flight, dropped and out-of-window requests of ``history`` for a stop signal at ``signalled_at``
    (``others``: the drain windows of the other replicas of a rolling restart, where failures may fall too)."""
    windows = [(signalled_at, ready_at), *others]
    in_flight = [r for r in history if r.start < signalled_at < r.end]
    taken = {id(r) for r in history if any(r.start < signal < r.end for signal, _ in windows)}
    dropped = [r for r in in_flight if r.status is None or r.status in GATEWAY_DROPPED]
    outside = [
        r
        for r in history
        if r.outcome != OK and id(r) not in taken and not any(start <= r.start <= end for start, end in windows)
    ]
    return Drain(in_flight, dropped, outside, (signalled_at, ready_at))


def check_no_in_flight_dropped(
    history: Sequence[Request] | None, restart: GracefulRestart | Sequence[GracefulRestart]
) -> Drain:
    """Every request in flight at ``restart``'s stop signal (each one's, for a rolling restart's list) was
    answered, and no failure fell outside the drain windows; returns the drain of all of them together."""
    history = require(history)
    restarts = [restart] if isinstance(restart, GracefulRestart) else list(restart)
    windows = []
    for one in restarts:
        if one.signalled_at is None or one.ready_at is None:
            raise CheckFailed(f"the graceful restart of {one.target} did not finish, so there is no drain to judge")
        windows.append((one.signalled_at, one.ready_at))
    drains = [judge_drain(history, s, r, [w for w in windows if w != (s, r)]) for s, r in windows]
    who = " and ".join(one.target for one in restarts)
    in_flight = [r for drain in drains for r in drain.in_flight]
    if not in_flight:
        raise CheckFailed(
            f"no request was in flight when {who} got {'its' if len(restarts) == 1 else 'their'} stop signal "
            f"({plural(len(history), 'request')} in the load): the scenario proves nothing; make requests slower "
            "or the load heavier"
        )
    problems = []
    for one, drain in zip(restarts, drains, strict=True):
        if drain.dropped:
            problems.append(
                f"{len(drain.dropped)} of the {plural(len(drain.in_flight), 'request')} in flight when {one.target} "
                f"got its stop signal {'was' if len(drain.dropped) == 1 else 'were'} dropped without an answer "
                f"({listing(drain.dropped, drain.window[0])}): a graceful stop must finish the requests it has "
                "accepted"
            )
    outside = drains[0].outside  # the same for every drain: failures outside all the windows
    if outside:
        spans = ", ".join(f"{one.target} ready again, {seconds(r - s)}" for one, (s, r) in zip(restarts, windows))
        what = "the drain window" if len(restarts) == 1 else "the drain windows"
        problems.append(
            f"{plural(len(outside), 'request')} failed outside {what} (from the stop signal to {spans}): "
            f"{listing(outside, windows[0][0])}"
        )
    notes = "; ".join(one.heal_note for one in restarts if one.heal_note)
    if problems:
        raise CheckFailed("; ".join(problems) + (f" ({notes})" if notes else ""))
    return Drain(in_flight, [], [], (windows[0][0], windows[-1][1]))
