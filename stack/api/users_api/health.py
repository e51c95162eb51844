"""``GET /health``: is the database usable right now? Always answered within ~HEALTH_TIMEOUT."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .db import Database
from .errors import RETRY_AFTER_SECONDS

__all__ = ["router"]

router = APIRouter()


@router.get("/health", responses={503: {}})
async def health(request: Request) -> JSONResponse:
    """200 when ``SELECT 1`` succeeds and the schema exists, else 503."""
    db: Database = request.app.state.db
    # The probe is single-flight with a deadline: while PostgreSQL is frozen every
    # caller waits on the same stuck probe for at most HEALTH_TIMEOUT, and stuck
    # probes never pile up threads or connections.
    reachable = await db.probe()
    if reachable and db.schema_ready.is_set():
        return JSONResponse({"status": "ok", "database": "reachable"})
    return JSONResponse(
        {"status": "degraded", "database": "reachable" if reachable else "unreachable"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
