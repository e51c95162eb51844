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
QUIET_S = 1.0  # seconds without a 503 that end an outage (the next 503 starts a new one)

app = create_app()
_state: dict[str, Any] = {"outages": 0, "last_503": -1e9, "holding": False, "hold_until": 0.0}


@app.middleware("http")
async def every_other_outage_is_slow(request: Request, call_next):
    if request.url.path.startswith("/health"):
        return await call_next(request)
    now = time.monotonic()
    if now < _state["hold_until"]:
        return JSONResponse({"detail": "still reconnecting"}, status_code=503, headers={"Retry-After": "1"})
    response = await call_next(request)
    if response.status_code == 503 or response.status_code >= 500:
        if now - _state["last_503"] > QUIET_S:
            _state["outages"] += 1
            _state["holding"] = _state["outages"] % 2 == 1
        _state["last_503"] = now
    elif _state["holding"] and response.status_code < 400:
        _state["holding"] = False
        _state["hold_until"] = now + HOLD_S
        return JSONResponse({"detail": "still reconnecting"}, status_code=503, headers={"Retry-After": "1"})
    return response
