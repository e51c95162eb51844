"""Broken variant of the users API: a deadlock, a serialization failure or a cancelled statement is a 500.

It lets PostgreSQL's ``deadlock_detected`` (40P01), ``serialization_failure``
(40001) and ``query_canceled`` (57014) errors escape as unhandled exceptions,
as a service that only expects connection errors from its database would (the
reference answers them 503 with ``Retry-After``, a transaction the client may
retry). The deadlock, serialization and cancelled-statement scenarios of
``features/database/concurrency.feature`` must fail against it (every time:
each fault returns only once the server aborted or cancelled a write)::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn concurrency_500:app
"""
from __future__ import annotations

from psycopg2 import errors
from sqlalchemy import Engine

from users_api.db import dispose_pool
from users_api.main import create_app

__all__ = ["app"]

_CONCURRENCY_ERRORS = (errors.DeadlockDetected, errors.SerializationFailure, errors.QueryCanceled)


class UnhandledDatabaseError(RuntimeError):
    """Not a database error the API knows how to answer: FastAPI makes it a 500."""


def _crash_on_concurrency(engine: Engine, exc: BaseException) -> None:
    if isinstance(getattr(exc, "orig", None), _CONCURRENCY_ERRORS):
        raise UnhandledDatabaseError(f"transaction aborted: {type(exc.orig).__name__}") from exc
    dispose_pool(engine, exc)


app = create_app(on_database_error=_crash_on_concurrency)
