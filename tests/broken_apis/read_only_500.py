"""Broken variant of the users API: a write refused by a read-only database is a 500, not a 503.

It lets PostgreSQL's ``read_only_sql_transaction`` error (SQLSTATE 25006)
escape as an unhandled exception, as a service that only expects connection
errors from its database would. The read-only scenario must fail against it::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn read_only_500:app
"""
from __future__ import annotations

from psycopg2 import errors
from sqlalchemy import Engine

from users_api.db import dispose_pool
from users_api.main import create_app

__all__ = ["app"]


class UnhandledDatabaseError(RuntimeError):
    """Not a database error the API knows how to answer: FastAPI makes it a 500."""


def _crash_on_read_only(engine: Engine, exc: BaseException) -> None:
    if isinstance(getattr(exc, "orig", None), errors.ReadOnlySqlTransaction):
        raise UnhandledDatabaseError("write refused: the database is read-only") from exc
    dispose_pool(engine, exc)


app = create_app(on_database_error=_crash_on_read_only)
