"""Broken variant of the users API: dead pooled connections are never noticed nor replaced.

No pre-ping, no pool disposal, no rollback when a connection goes back to the
pool (whose failure would make SQLAlchemy drop it), and SQLAlchemy is told no
error is a disconnect: a hand-rolled pool that never checks its connections.
Once PostgreSQL has ended the API's sessions, every request lands on a dead
connection, until the API restarts. The
scenario that terminates the API's sessions must fail against it::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn keeps_dead_connections:app
"""
from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import QueuePool

from users_api.config import Settings
from users_api.main import create_app

__all__ = ["app"]


def _engine_blind_to_disconnects(config: Settings) -> Engine:
    options = f"-c statement_timeout={config.statement_timeout_ms} -c lock_timeout={config.lock_timeout_ms}"
    engine = create_engine(config.database_url, poolclass=QueuePool, pool_size=config.pool_size,
                           max_overflow=config.max_overflow, pool_timeout=config.pool_timeout,
                           pool_pre_ping=False, pool_reset_on_return=None, hide_parameters=True,
                           connect_args={"connect_timeout": config.connect_timeout,
                                         "application_name": config.app_name, "options": options})
    engine.dialect.is_disconnect = lambda error, connection, cursor: False
    return engine


def _keep_dead_connections(engine: Engine, exc: BaseException) -> None:
    """Do nothing: dead pooled connections stay in the pool."""


app = create_app(engine_factory=_engine_blind_to_disconnects, on_database_error=_keep_dead_connections)
