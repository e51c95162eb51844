"""Broken variant of the users API: a read of one user locks its row (``SELECT ... FOR UPDATE``).

A locking read is what an ORM's get-then-modify pattern (``with_for_update()``)
leaves in read paths: harmless until another transaction holds the row, then
every read of it waits for that transaction (here up to the reference's 1 s
lock timeout, then a 503). The reference API's reads take no row lock, so rows
held by an idle transaction cost it nothing. "Rows held by an idle transaction
do not stall the API" must fail against it::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn locking_reads:app
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from users_api.db import users
from users_api.main import create_app
from users_api.routes import Db, User, UserId, _not_found
from variant_kit import override_route

__all__ = ["app"]


async def get_user(user_id: UserId, db: Db) -> Any:
    """One user by id, read with a row lock (the bug)."""

    def work(session, deadline) -> dict | None:
        with session.begin():
            row = (
                session.execute(select(users).where(users.c.id == user_id).with_for_update())
                .mappings()
                .one_or_none()
            )
        return None if row is None else dict(row)

    row = await db.run(work)
    return _not_found(user_id) if row is None else row


app = create_app()
override_route(app, "GET", "/users/{user_id}", get_user, response_model=User)
