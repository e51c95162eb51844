"""Broken variant of the users API: it recovers from every other database outage only slowly (flaky).

After an outage (a run of 503s), the reference API serves again as soon as PostgreSQL does. This one
counts the outages it sees and, after the first, third, fifth ... keeps answering 503 for
``HOLD_S`` seconds once the database is back, as a service whose reconnect backoff sometimes
overshoots. Run the same scenario several times on one stack (``-D repeat=3``) and "the API recovers
within 2 seconds" passes in some runs and fails in others: the suite must report it as flaky. The
health endpoint is left alone, so the suite's own probes between scenarios are not held. Start it
with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn flaky_recovery:app
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from users_api.main import create_app

__all__ = ["HOLD_S", "app"]

HOLD_S = 3.0  # seconds of 503 after the database is back, on odd-numbered outages
HEALTHY_S = 1.0  # seconds of successes that end an outage (the next failure starts a new one)
MIN_FAILURES = 10  # failures that make an outage (a stray 503 between scenarios does not count)

app = create_app()
# ``healthy_since``: the first success since the last failure (None: failing, or nothing seen yet)
_state: dict[str, Any] = {
    "outages": 0,
    "failures": 0,
    "healthy_since": None,
    "holding": False,
    "hold_until": 0.0,
}


def _still_reconnecting() -> JSONResponse:
    return JSONResponse({"detail": "still reconnecting"}, status_code=503, headers={"Retry-After": "1"})


@app.middleware("http")
async def every_other_outage_is_slow(request: Request, call_next):
    if request.url.path.startswith("/health"):
        return await call_next(request)
    now = time.monotonic()
    if now < _state["hold_until"]:
        return _still_reconnecting()
    response = await call_next(request)
    healthy_since = _state["healthy_since"]
    if response.status_code >= 500:
        # a new run of failures after a second of successes: a gap inside an outage does not split it
        if healthy_since is not None and now - healthy_since >= HEALTHY_S:
            _state["failures"] = 0
        _state["healthy_since"] = None
        _state["failures"] += 1
        if _state["failures"] == MIN_FAILURES:
            _state["outages"] += 1
            _state["holding"] = _state["outages"] % 2 == 1
    elif response.status_code < 400:
        if _state["holding"]:
            _state["holding"] = False
            _state["hold_until"] = now + HOLD_S
            return _still_reconnecting()
        if healthy_since is None:
            _state["healthy_since"] = now
    return response
