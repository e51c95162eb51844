"""Broken variant of the users API: no pool pre-ping, no pool disposal after errors.

After a PostgreSQL restart its pool still holds the dead connections, so the
first request on each of them fails (503). Scenarios about database restarts
must fail against it. Start it like the real one, with this directory and
``stack/api`` on the path::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn no_pre_ping:app
"""
from __future__ import annotations

from sqlalchemy import Engine

from users_api.config import Settings
from users_api.db import make_engine
from users_api.main import create_app

__all__ = ["app"]


def _engine_without_pre_ping(config: Settings) -> Engine:
    return make_engine(config, pre_ping=False)


def _keep_dead_connections(engine: Engine, exc: BaseException) -> None:
    """Do nothing: dead pooled connections stay in the pool."""


app = create_app(engine_factory=_engine_without_pre_ping, on_database_error=_keep_dead_connections)
