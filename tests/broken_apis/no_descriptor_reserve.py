"""Broken variant of the users API: no spare file descriptor kept for the clients it cannot accept.

At its descriptor limit (``RLIMIT_NOFILE``) the process cannot ``accept()`` a
client: asyncio reports EMFILE, stops accepting for a second and tries again,
so a new client waits in the kernel's queue until a descriptor is free, and
times out if that takes longer than its timeout. The reference API keeps one
descriptor in reserve (:mod:`users_api.descriptor_reserve`) and answers each
such client a fast 503. Under "api cannot open more than N files" for longer
than the load's request timeout, "every failed request is answered with 503"
must fail against it. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn no_descriptor_reserve:app --loop asyncio
"""
from __future__ import annotations

from users_api.main import create_app

__all__ = ["app"]

app = create_app(descriptor_reserve_kept=False)
