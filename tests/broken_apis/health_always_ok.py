"""Broken variant of the users API: a health endpoint that always says ok.

``GET /health`` answers 200 without asking the database, as many services'
"liveness" routes do, so a load balancer keeps sending traffic to an instance
whose database is gone. "Health tells the truth while Postgres is stopped" must
fail against it. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn health_always_ok:app
"""
from __future__ import annotations

from fastapi.responses import JSONResponse

from users_api.main import create_app
from variant_kit import override_route

__all__ = ["app"]


async def _health_without_database() -> JSONResponse:
    """200 whatever the database's state."""
    return JSONResponse({"status": "ok"})


app = create_app()
override_route(app, "GET", "/health", _health_without_database)
