"""Users of the reference workload: created through the API, verified through the API and SQL."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from support import database
from support.verdict import CheckFailed

__all__ = ["User", "create_users", "check_users_intact", "first_request", "try_duplicate_write",
           "check_user_count", "check_status"]


@dataclass(frozen=True)
class User:
    """A user the scenario created and the API acknowledged."""

    id: int
    name: str
    email: str


def _client(api_url: str, timeout: float) -> httpx.Client:
    return httpx.Client(base_url=api_url, timeout=timeout)


def create_users(api_url: str, count: int, timeout: float = 5.0) -> list[User]:
    """Create ``count`` users through ``POST /users``; every one must be answered 201."""
    run = uuid.uuid4().hex[:8]
    users = []
    with _client(api_url, timeout) as client:
        for i in range(count):
            body = {"name": f"seed-{run}-{i}", "email": f"seed-{run}-{i}@example.test"}
            response = client.post("/users", json=body)
            if response.status_code != 201:
                raise CheckFailed(f"could not create user {i + 1} of {count}: "
                                  f"{response.status_code} {response.text[:200]}")
            row = response.json()
            users.append(User(row["id"], row["name"], row["email"]))
    return users


def check_users_intact(api_url: str, dsn: str, users: list[User], timeout: float = 5.0) -> None:
    """Every user in ``users`` is served by ``GET /users/{id}`` and stored in PostgreSQL unchanged."""
    if not users:
        raise CheckFailed("no users were created in this scenario: add a 'Given N users exist' step")
    wrong = []
    with _client(api_url, timeout) as client:
        for user in users:
            response = client.get(f"/users/{user.id}")
            if response.status_code != 200:
                wrong.append(f"{user.email}: API answered {response.status_code}")
            elif (response.json().get("name"), response.json().get("email")) != (user.name, user.email):
                wrong.append(f"{user.email}: API serves {response.json()}")
    stored = database.rows_by_email(dsn, [u.email for u in users])
    for user in users:
        if stored.get(user.email) != (user.name, user.email):
            wrong.append(f"{user.email}: {'missing from' if user.email not in stored else 'changed in'} the database")
    if wrong:
        raise CheckFailed(f"{len(wrong)} of {len(users)} users did not survive: " + "; ".join(wrong[:10]))


def first_request(api_url: str, timeout: float = 5.0) -> httpx.Response | str:
    """The answer to one ``GET /users`` (or the transport error as text)."""
    try:
        with _client(api_url, timeout) as client:
            return client.get("/users", params={"limit": 1})
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"


def try_duplicate_write(api_url: str, existing: list[User], timeout: float = 5.0) -> httpx.Response:
    """Try to create a user with an email that is already taken."""
    if not existing:
        raise CheckFailed("no users exist to collide with: add a 'Given N users exist' step")
    with _client(api_url, timeout) as client:
        return client.post("/users", json={"name": "duplicate", "email": existing[0].email})


def check_status(response: httpx.Response | str, status: int, what: str) -> None:
    """``response`` was the HTTP ``status`` with a JSON body; else fail naming ``what`` and the answer."""
    if isinstance(response, str) or response.status_code != status:
        got = response if isinstance(response, str) else f"{response.status_code} {response.text[:200]}"
        raise CheckFailed(f"{what} was expected to be answered {status}, got {got}")
    try:
        response.json()
    except ValueError:
        raise CheckFailed(f"the {status} answer to {what} has no JSON body: {response.text[:200]!r}") from None


def check_user_count(dsn: str, expected: int) -> None:
    """The users table holds exactly ``expected`` rows."""
    actual = database.count_users(dsn)
    if actual != expected:
        raise CheckFailed(f"the database holds {actual} users, expected {expected}: "
                          "a failed write left a partial row" if actual > expected else
                          f"the database holds {actual} users, expected {expected}: rows were lost")
