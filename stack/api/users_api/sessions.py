"""Sign-in sessions: ``POST /sessions`` opens one, ``GET /sessions/current`` says whether its token is valid.

A session is an opaque bearer token kept in this process with its expiry, and
the expiry is an instant on ``time.monotonic()``: a session lives
``SESSION_SECONDS`` of elapsed time, whatever the wall clock does. A wall
clock can jump (an NTP step, a VM resumed, an operator's ``date -s``); a
lifetime measured on it would end every session at once when the clock jumps
ahead, and keep them alive for as long as the clock was set back. A sweeper
drops expired sessions every ``SWEEP_SECONDS``, so the store stays bounded.
"""
from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from .errors import error_response

__all__ = ["Sessions", "router", "SWEEP_SECONDS"]

SWEEP_SECONDS = 0.5

router = APIRouter()


class Sessions:
    """Tokens and their expiry on ``clock`` (seconds); thread-safe."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def open(self) -> str:
        """A new token, valid for ``lifetime`` seconds from now."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expiry[token] = self.clock() + self.lifetime
        return token

    def remaining(self, token: str) -> float | None:
        """Seconds the session of ``token`` has left, or None when there is none (unknown or expired)."""
        with self._lock:
            expiry = self._expiry.get(token)
        if expiry is None:
            return None
        left = expiry - self.clock()
        return left if left > 0 else None

    def sweep(self) -> int:
        """Drop every expired session; how many were dropped."""
        now = self.clock()
        with self._lock:
            expired = [token for token, expiry in self._expiry.items() if expiry <= now]
            for token in expired:
                del self._expiry[token]
        return len(expired)

    async def sweep_forever(self, every: float = SWEEP_SECONDS) -> None:
        """Sweep every ``every`` seconds until cancelled (the app's shutdown)."""
        while True:
            await asyncio.sleep(every)
            self.sweep()


def _sessions(request: Request) -> Sessions:
    return request.app.state.sessions


@router.post("/sessions", status_code=201)
async def open_session(request: Request) -> Any:
    """Open a session: ``{"token": ..., "expires_in": seconds}``."""
    sessions = _sessions(request)
    return {"token": sessions.open(), "token_type": "bearer", "expires_in": sessions.lifetime}


@router.get("/sessions/current", responses={401: {}})
async def current_session(request: Request, authorization: Annotated[str | None, Header()] = None) -> Any:
    """200 with the seconds left when the bearer token's session is valid, 401 otherwise."""
    scheme, _, token = (authorization or "").partition(" ")
    left = _sessions(request).remaining(token) if scheme.lower() == "bearer" and token else None
    if left is None:
        response: JSONResponse = error_response(401, "no valid session", "sign in again with POST /sessions")
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    return {"expires_in": round(left, 3)}
