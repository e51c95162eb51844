"""Broken variant of the users API: an unbounded in-memory cache that grows with every write.

Each ``POST /users`` keeps 4 MiB (a rendered copy of the answer, padded, as a
cache without a bound or an eviction would) in a list that is never emptied.
Under a memory limit the kernel's OOM killer kills it within seconds of load,
and every request in flight and until the restart policy brings it back fails.
The reference API holds no per-request memory after the answer. "the error rate
stays below 1%" under "the api memory is limited to 200 MB for 3 seconds" must
fail against it. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn leaky_cache:app
"""
from __future__ import annotations

from fastapi import Request

from users_api.main import create_app

__all__ = ["ENTRY_BYTES", "app"]

ENTRY_BYTES = 4 * 1024 * 1024  # kept per write, never evicted

_cache: list[bytearray] = []

app = create_app()


@app.middleware("http")
async def cache_every_write(request: Request, call_next):
    response = await call_next(request)
    if request.method == "POST":
        _cache.append(bytearray(b"x" * ENTRY_BYTES))  # written, so resident and charged to the cgroup
    return response
