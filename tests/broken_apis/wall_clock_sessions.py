"""Broken variant of the users API: session lifetimes measured on the wall clock.

The reference measures a session's lifetime on ``time.monotonic()``
(:mod:`users_api.sessions`). Here it is ``time.time()``, as in a service that
stores ``expires_at = now() + lifetime``: when the machine's clock jumps ahead
(an NTP step, a resumed VM) every session is expired at once and swept, so every
client is signed out; set back, sessions outlive their lifetime. The clock
scenarios in ``features/time/`` must fail against it. Start it with
``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn wall_clock_sessions:app
"""
from __future__ import annotations

import time

from users_api.main import create_app

__all__ = ["app"]

app = create_app(session_clock=time.time)
