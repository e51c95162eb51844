"""Broken variant of the users API: no connection pool, one new PostgreSQL connection per request.

When PostgreSQL has no connection slot to spare, every request is refused,
where the reference API serves on with the connections its pool holds. The
slot-exhaustion scenario must fail against it::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn no_pool:app
"""
from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from users_api.config import Settings
from users_api.main import create_app

__all__ = ["app"]


def _engine_without_pool(config: Settings) -> Engine:
    options = f"-c statement_timeout={config.statement_timeout_ms} -c lock_timeout={config.lock_timeout_ms}"
    return create_engine(config.database_url, poolclass=NullPool, hide_parameters=True,
                         connect_args={"connect_timeout": config.connect_timeout,
                                       "application_name": config.app_name, "options": options})


app = create_app(engine_factory=_engine_without_pool)
