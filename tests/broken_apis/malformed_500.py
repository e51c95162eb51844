"""Broken variant of the users API: a malformed body answered 500 instead of 4xx.

The reference app lets FastAPI validate ``POST /users`` against its model, so bad
JSON, wrong types and oversized fields are refused with 422 before any handler
runs. Here the handler reads the body itself and trusts it, as services that
parse by hand do: ``json.loads`` on a truncated body and the model built from a
list both raise inside the handler, which the framework answers ``500 Internal
Server Error``. Well-formed writes are served exactly as by the reference.
"Every malformed request is refused with a 4xx" must fail against it. Start it
with ``PYTHONPATH=stack/api:tests/broken_apis``::

    python -m uvicorn malformed_500:app
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from users_api.main import create_app
from users_api.routes import Db, NewUser, User, create_user
from variant_kit import override_route

__all__ = ["app"]


async def create_user_trusting_its_body(request: Request, db: Db) -> Any:
    """``POST /users`` that parses and builds its model by hand, with no refusal of its own."""
    data = json.loads(await request.body())  # a truncated body raises here: 500
    return await create_user(NewUser(**data), db)  # a list or wrong types raise here: 500


app = create_app()
override_route(app, "POST", "/users", create_user_trusting_its_body, status_code=201, response_model=User)
