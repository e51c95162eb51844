"""Broken variant of the users API: every write costs more CPU than a small quota allows.

Each ``POST /users`` first hashes its path with PBKDF2 (as a sign-up hashes a
password) at a cost of about 30 ms of CPU, in a worker thread. With a whole CPU
that is fine at a light load (about a third of one CPU at 10 writes/s); under a CPU
quota of a tenth of one CPU the writes queue faster than they are served and
requests wait for seconds. The
reference API spends about a millisecond of CPU on a request. "no request takes
longer than 4 seconds" under "the api CPU is limited to 10%" must fail against
it. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn cpu_heavy:app
"""
from __future__ import annotations

import asyncio
import hashlib

from fastapi import Request

from users_api.main import create_app

__all__ = ["ITERATIONS", "app"]

ITERATIONS = 60_000  # PBKDF2-SHA256 rounds per write: about 30 ms of one CPU here

app = create_app()


@app.middleware("http")
async def hash_on_write(request: Request, call_next):
    if request.method == "POST":
        await asyncio.to_thread(hashlib.pbkdf2_hmac, "sha256", request.url.path.encode(), b"salt", ITERATIONS)
    return await call_next(request)
