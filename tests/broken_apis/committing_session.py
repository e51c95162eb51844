"""Broken variant of the users API: a session dependency that commits whatever the handler answered.

The session comes from the dependency of many public FastAPI examples::

    def get_db():
        db = Session(engine)
        try:
            yield db
            db.commit()
        finally:
            db.close()

and ``POST /users`` writes through it with an upsert (``INSERT ... ON CONFLICT
(email) DO UPDATE ... RETURNING``, the usual way to learn in one statement
whether the row existed), answering 409 when it did. Its author trusts that an
error answer is not committed; the dependency commits it anyway, so a refused
write changes the stored user. (With FastAPI's default dependency scope the
commit even runs after the response is sent.) In the reference API each unit
of work owns its transaction and an error answer commits nothing.
"A refused write leaves no partial row" must fail against it. Start it with
``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn committing_session:app
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import literal_column
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from users_api.db import DatabaseUnavailable, describe_failure, users
from users_api.errors import error_response
from users_api.main import create_app
from users_api.routes import NewUser, User
from variant_kit import override_route

__all__ = ["app", "get_db"]


def get_db(request: Request) -> Iterator[Session]:
    """A session per request, committed after the handler returns (the bug), closed at the end."""
    db = Session(request.app.state.db.engine)
    try:
        yield db
        db.commit()
    finally:
        db.close()


def create_user(body: NewUser, db: Annotated[Session, Depends(get_db)]) -> Any:
    """Store a user; 409 when the email is taken (but the upsert's update is committed)."""
    upsert = insert(users).values(name=body.name, email=body.email)
    upsert = upsert.on_conflict_do_update(index_elements=[users.c.email], set_={"name": upsert.excluded.name})
    # xmax = 0 on the returned row version means it was inserted, not updated
    created = literal_column("xmax = 0").label("created")
    try:
        row = db.execute(upsert.returning(*users.c, created)).mappings().one()
    except DBAPIError as exc:
        # database failures are still the reference's 503: only the transaction handling is broken
        raise DatabaseUnavailable(describe_failure(exc)) from None
    if not row["created"]:
        return error_response(409, "email already exists", body.email)
    return {name: row[name] for name in ("id", "name", "email", "created_at")}


app = create_app()
override_route(app, "POST", "/users", create_user, status_code=201, response_model=User)
