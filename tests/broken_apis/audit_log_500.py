"""Broken variant of the users API: a failure to open a file answered 500 (and the connection dropped).

Each ``POST /users`` appends a line to an audit file it opens for the purpose
(in the system's temporary directory) and lets the ``OSError`` of a failed
``open`` escape: out of descriptors (EMFILE) or out of space (ENOSPC) the
framework answers ``500 Internal Server Error``. The reference API opens no file
per request, and a database connection it cannot open (EMFILE) is answered 503.
"every failed request is answered with 503" under "api cannot open more than 16
files" must fail against it. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn audit_log_500:app
"""
from __future__ import annotations

import os
import tempfile

from fastapi import Request

from users_api.main import create_app

__all__ = ["AUDIT_FILE", "app"]

AUDIT_FILE = os.path.join(tempfile.gettempdir(), f"users-api-audit-{os.getpid()}.log")

app = create_app()


@app.middleware("http")
async def audit_writes(request: Request, call_next):
    if request.method == "POST":
        with open(AUDIT_FILE, "a") as audit:  # no OSError handler: EMFILE / ENOSPC become a 500
            audit.write(f"{request.url.path}\n")
    return await call_next(request)
