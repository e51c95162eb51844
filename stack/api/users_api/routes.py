"""The users endpoints.

Each endpoint is async and hands one synchronous unit of work to
:meth:`Database.run`; the unit of work owns its transaction with
``with session.begin():`` so a failure anywhere inside rolls everything back.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import Database, Deadline, users
from .errors import error_response

__all__ = ["NewUser", "User", "UserPage", "router"]

BIGINT_MAX = 2**63 - 1
# Ids and offsets outside bigint would reach PostgreSQL as an out-of-range error:
# a client mistake must be a 422/404, never a database failure answered 503.
UserId = Annotated[int, Path(ge=-BIGINT_MAX, le=BIGINT_MAX)]

router = APIRouter()


class NewUser(BaseModel):
    """The body of ``POST /users``."""

    model_config = ConfigDict(str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")


class User(BaseModel):
    """A stored user."""

    id: int
    name: str
    email: str
    created_at: datetime


class UserPage(BaseModel):
    """One page of users ordered by id, and how many there are in all."""

    items: list[User]
    total: int


def get_database(request: Request) -> Database:
    """The app's :class:`Database` (it hands out sessions; it never commits for you)."""
    return request.app.state.db


Db = Annotated[Database, Depends(get_database)]


def _not_found(user_id: int) -> JSONResponse:
    return error_response(404, "user not found", f"no user with id {user_id}")


# -- units of work (run in a worker thread) ---------------------------------------------


def _create(session: Session, deadline: Deadline, name: str, email: str) -> dict[str, Any]:
    with session.begin():
        user_id = session.execute(insert(users).values(name=name, email=email).returning(users.c.id)).scalar_one()
        # A second statement in the same transaction: return the row as stored
        # (server defaults included). If it fails, the insert is rolled back with it.
        row = session.execute(select(users).where(users.c.id == user_id)).mappings().one()
        # If the request already got its 503, do not commit behind the client's back:
        # raising here rolls the insert back, so "503" means "not written".
        deadline.check()
    return dict(row)


def _get(session: Session, deadline: Deadline, user_id: int) -> dict[str, Any] | None:
    with session.begin():
        row = session.execute(select(users).where(users.c.id == user_id)).mappings().one_or_none()
    return None if row is None else dict(row)


def _list(session: Session, deadline: Deadline, limit: int, offset: int) -> dict[str, Any]:
    with session.begin():
        total = session.execute(select(func.count()).select_from(users)).scalar_one()
        rows = session.execute(select(users).order_by(users.c.id).limit(limit).offset(offset)).mappings().all()
    return {"items": [dict(r) for r in rows], "total": total}


def _delete(session: Session, deadline: Deadline, user_id: int) -> bool:
    with session.begin():
        deleted = session.execute(delete(users).where(users.c.id == user_id)).rowcount
        deadline.check()  # as in _create: no commit after the client was told 503
    return deleted > 0


# -- endpoints --------------------------------------------------------------------------


@router.post("/users", status_code=201, response_model=User, responses={409: {}, 503: {}})
async def create_user(body: NewUser, db: Db) -> Any:
    """Store a user; 409 when the email is taken."""
    try:
        return await db.run(lambda s, d: _create(s, d, body.name, body.email))
    except IntegrityError:
        return error_response(409, "email already exists", body.email)


@router.get("/users/{user_id}", response_model=User, responses={404: {}, 503: {}})
async def get_user(user_id: UserId, db: Db) -> Any:
    """One user by id."""
    row = await db.run(lambda s, d: _get(s, d, user_id))
    return _not_found(user_id) if row is None else row


@router.get("/users", response_model=UserPage, responses={503: {}})
async def list_users(
    db: Db,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> Any:
    """A page of users ordered by id."""
    return await db.run(lambda s, d: _list(s, d, limit, offset))


@router.delete("/users/{user_id}", status_code=204, responses={404: {}, 503: {}})
async def delete_user(user_id: UserId, db: Db) -> Response:
    """Delete a user; 404 when there is none."""
    deleted = await db.run(lambda s, d: _delete(s, d, user_id))
    return Response(status_code=204) if deleted else _not_found(user_id)
