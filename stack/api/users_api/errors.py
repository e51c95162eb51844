"""How failures become HTTP answers.

Every database failure is a 503 with ``Retry-After: 1`` and a JSON body, never
a 500: a 500 makes uvicorn drop the keep-alive connection and tells clients and
load balancers "bug" where the truth is "try again in a moment".
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .db import DatabaseUnavailable

__all__ = ["RETRY_AFTER_SECONDS", "error_response", "install_error_handlers", "unavailable_response"]

RETRY_AFTER_SECONDS = 1


def error_response(status: int, error: str, detail: str | None = None) -> JSONResponse:
    """A JSON error body ``{"error": ..., "detail": ...}`` with ``status``."""
    body = {"error": error} if detail is None else {"error": error, "detail": detail}
    return JSONResponse(body, status_code=status)


def unavailable_response(detail: str) -> JSONResponse:
    """The 503 answer for a database failure."""
    response = error_response(503, "database unavailable", detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseUnavailable)
    return unavailable_response(exc.detail)


def install_error_handlers(app: FastAPI) -> None:
    """Answer :class:`DatabaseUnavailable` raised anywhere in a handler with a 503."""
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
