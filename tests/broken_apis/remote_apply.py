"""Broken variant of the users API: every commit waits until a replica has applied it (``remote_apply``).

Each new database connection sets ``synchronous_commit = remote_apply``, as a
service does that wants reads from the replicas to see its own writes at once.
The price: a replica that stops applying WAL (a long query on it, a paused
replay, a slow disk) holds up every commit on the primary, so the API's writes
stall while its database is healthy. "The primary keeps acknowledging writes
while the replicas lag" must fail against it. Start it like the real one, with
this directory and ``stack/api`` on the path::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn remote_apply:app
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from users_api.main import create_app

__all__ = ["app"]


@event.listens_for(Engine, "connect")
def _wait_for_the_replicas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET synchronous_commit = remote_apply")
    cursor.close()
    dbapi_connection.commit()


app = create_app()
