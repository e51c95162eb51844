"""A client's sign-in session with the API, and whether the API still honours it.

The reference API opens a session with ``POST /sessions`` (a bearer token and
its lifetime, ``expires_in`` seconds) and answers ``GET /sessions/current``
with 200 while the token's session lasts, 401 after. Both go under the
workload's ``base_path``. The clock faults are judged on it: a session's
lifetime is elapsed time, which no wall-clock jump may shorten.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from support.checks.verdict import CheckFailed
from support.faults.timeline import FaultWindow
from support.stack.workload import Workload

__all__ = ["Session", "sign_in", "check_session_valid"]

#: seconds one control request may take
TIMEOUT = 5.0


@dataclass(frozen=True)
class Session:
    """A token the API gave (kept out of reprs: the evidence shows no secret), its lifetime and when it was opened."""

    url: str
    token: str = field(repr=False)
    lifetime: float
    opened: float  # monotonic s


def sign_in(api_url: str, workload: Workload) -> Session:
    """Open a session with ``POST /sessions``; :class:`CheckFailed` in one line when the API has none to give."""
    base = api_url + workload.base_path
    try:
        answer = httpx.post(base + "/sessions", timeout=TIMEOUT)
    except httpx.HTTPError as error:
        raise CheckFailed(f"could not sign in: POST {workload.base_path}/sessions failed: {error}") from None
    if answer.status_code == 404:
        raise CheckFailed(
            f"the API has no sign-in sessions (POST {workload.base_path}/sessions answered 404); "
            "the session steps need an API that opens them as the reference API does"
        )
    try:
        body = answer.json()
        token, lifetime = str(body["token"]), float(body["expires_in"])
    except (ValueError, KeyError, TypeError):
        raise CheckFailed(
            f"could not sign in: POST {workload.base_path}/sessions answered {answer.status_code} "
            f"without a token and expires_in: {answer.text[:200]!r}"
        ) from None
    return Session(base, token, lifetime, time.monotonic())


def check_session_valid(session: Session | None, faults: Sequence[FaultWindow] = ()) -> None:
    """The API still honours ``session`` (``GET /sessions/current`` is 200) while it is within its lifetime.

    ``faults`` (the scenario's fault timeline) name what happened to the clock, in the message.
    """
    clock_note = ", ".join(f"a {w.name} of {w.target}" for w in faults if w.name.startswith("clock"))
    if session is None:
        raise CheckFailed("no client has signed in in this scenario; sign in first")
    elapsed = time.monotonic() - session.opened
    if elapsed >= session.lifetime:
        raise CheckFailed(
            f"the session is {elapsed:.1f} s old, past its {session.lifetime:g} s lifetime: the check proves nothing"
        )
    try:
        answer = httpx.get(
            session.url + "/sessions/current", headers={"Authorization": f"Bearer {session.token}"}, timeout=TIMEOUT
        )
    except httpx.HTTPError as error:
        raise CheckFailed(f"could not ask the API about the session: {error}") from None
    if answer.status_code != 200:
        after = f" after {clock_note}" if clock_note else ""
        raise CheckFailed(
            f"a session of {session.lifetime:g} s opened {elapsed:.1f} s ago was refused ({answer.status_code}){after}: "
            "session lifetimes must be measured on a monotonic clock, not on the wall clock"
        )
