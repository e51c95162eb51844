"""Broken variant of the users API: writes acknowledged before they are committed (write-behind).

``POST /users`` answers 201 at once from memory: the id comes from a block of
ids reserved from the table's sequence ahead of time, the row goes to a buffer
and to a cache, and a background thread inserts the buffer every 250 ms. Reads
look in the database first and, for a row it does not hold (not flushed yet),
in the cache. When a flush fails (PostgreSQL crashed, restarted, refused) the
batch is logged and dropped: every write in it was acknowledged and is lost.
The reference API answers 201 only after its transaction committed.
"no acknowledged write is lost" under "postgres is killed" with load must fail
against it. Start it with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn write_behind:app
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from users_api.db import Database, Deadline, describe_failure, users
from users_api.errors import error_response
from users_api.main import create_app
from users_api.routes import NewUser, User, UserId
from variant_kit import override_route

__all__ = ["FLUSH_INTERVAL", "ID_BLOCK", "WriteBehind", "app"]

# seconds between two flushes of the buffer (WRITE_BEHIND_FLUSH_S: write_behind_slow_flush.toml flushes every
# 60 s, so a kill surely finds acknowledged writes in the buffer)
FLUSH_INTERVAL = float(os.environ.get("WRITE_BEHIND_FLUSH_S", "0.25"))
ID_BLOCK = 500  # ids reserved from the sequence at a time

log = logging.getLogger("users_api")


class WriteBehind:
    """Rows acknowledged but not yet stored, the cache that serves them, and the flusher thread."""

    def __init__(self, interval: float = FLUSH_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._ids: list[int] = []
        self._pending: list[dict[str, Any]] = []
        self._cache: dict[int, dict[str, Any]] = {}
        self._flusher: threading.Thread | None = None

    def take_id(self) -> int | None:
        """A reserved id, or None when the block is used up."""
        with self._lock:
            return self._ids.pop() if self._ids else None

    def add_ids(self, ids: list[int]) -> None:
        with self._lock:
            self._ids.extend(reversed(ids))

    def acknowledge(self, row: dict[str, Any], engine: Engine) -> None:
        """Buffer ``row`` for the next flush and cache it; the caller answers 201 right away."""
        with self._lock:
            self._pending.append(row)
            self._cache[row["id"]] = row
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, args=(engine,),
                                                 name="users-write-behind", daemon=True)
                self._flusher.start()

    def cached(self, user_id: int) -> dict[str, Any] | None:
        with self._lock:
            return self._cache.get(user_id)

    def _flush_forever(self, engine: Engine) -> None:
        stop = threading.Event()  # never set: the daemon thread ends with the process
        while not stop.wait(self.interval):  # the flush period is the design, not a synchronisation
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                with engine.begin() as conn:
                    conn.execute(insert(users), batch)
            except Exception as exc:  # noqa: BLE001 - the bug: the batch is dropped, not retried
                log.warning("write-behind: dropped %d acknowledged writes: %s", len(batch), describe_failure(exc))


def _reserve_ids(session: Session, deadline: Deadline) -> list[int]:
    with session.begin():
        sequence = func.nextval(func.pg_get_serial_sequence("users", "id"))
        return list(session.execute(select(sequence).select_from(func.generate_series(1, ID_BLOCK))).scalars())


def _get(session: Session, deadline: Deadline, user_id: int) -> dict[str, Any] | None:
    with session.begin():
        row = session.execute(select(users).where(users.c.id == user_id)).mappings().one_or_none()
    return None if row is None else dict(row)


store = WriteBehind()


async def create_user(body: NewUser, request: Request) -> Any:
    """Acknowledge the user at once; it is inserted by the next flush (if that works)."""
    db: Database = request.app.state.db
    user_id = store.take_id()
    while user_id is None:
        store.add_ids(await db.run(_reserve_ids))  # the only database work before the answer: a 503 if it fails
        user_id = store.take_id()
    row = {"id": user_id, "name": body.name, "email": body.email, "created_at": datetime.now(timezone.utc)}
    store.acknowledge(row, db.engine)
    return row


async def get_user(user_id: UserId, request: Request) -> Any:
    """One user from the database (503 when it fails), else from the cache of unflushed writes."""
    row = await request.app.state.db.run(lambda s, d: _get(s, d, user_id))
    if row is None:
        row = store.cached(user_id)
    return row if row is not None else error_response(404, "user not found", f"no user with id {user_id}")


app = create_app()
override_route(app, "POST", "/users", create_user, status_code=201, response_model=User)
override_route(app, "GET", "/users/{user_id}", get_user, response_model=User)
