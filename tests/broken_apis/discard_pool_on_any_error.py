"""Broken variant of the users API: every ``OperationalError`` throws the whole pool away.

A lock timeout or a refused connect leaves the pooled connections working, yet
this variant closes them all (what the reference API did before it told the
two apart). When PostgreSQL has no connection slot to spare it cannot open
them again, and stays down until slots free up. The scenario that locks the
table while the slots are exhausted must fail against it::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn discard_pool_on_any_error:app
"""
from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from users_api.main import create_app

__all__ = ["app"]


def _discard_on_any_operational_error(engine: Engine, exc: BaseException) -> None:
    if isinstance(exc, OperationalError) or getattr(exc, "connection_invalidated", False):
        engine.dispose()


app = create_app(on_database_error=_discard_on_any_operational_error)
