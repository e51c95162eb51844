"""Broken variant of the users API: it wedges for good after its first database failure.

Once it has served (answered a 200) and then answered a 503 (the database was
unavailable for a request or for the health probe), every later request,
``GET /health`` too, waits forever (503s while it starts up do not count):
the process keeps running and keeps its port, but never answers again. It is
what a synchronous service whose pool its own threads starve during a database
stall looks like from outside, made certain instead of likely. The suite must
restart it before the next scenario and still judge that scenario on its own.
Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn wedges_after_db_error:app
"""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from users_api.main import create_app

__all__ = ["app"]


class WedgeAfterDatabaseError:
    """ASGI wrapper: after the first 503 that follows a 200 the application hangs every request."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.served = False
        self.wedged = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.wedged.is_set():
            await asyncio.Event().wait()  # never set: the request hangs until the process dies

        async def watch(message: dict[str, Any]) -> None:
            status = message.get("status") if message["type"] == "http.response.start" else None
            self.served = self.served or status == 200
            if status == 503 and self.served and not self.wedged.is_set():
                self.wedged.set()
                print("wedges_after_db_error: answered 503; every request hangs from now on", file=sys.stderr,
                      flush=True)
            await send(message)

        await self.app(scope, receive, watch)


app = WedgeAfterDatabaseError(create_app())
