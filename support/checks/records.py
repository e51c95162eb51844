"""Records of the workload ("users" for the reference API): created through the API, verified
through the API and through SQL.

Every request goes through the workload as the load does: under its ``base_path``,
with its headers and its auth token (fetched at the first request, again after a
401, then the request is sent once more: a 401 applied nothing).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from support.checks.verdict import CheckFailed
from support.stack import database
from support.stack.auth import Auth, AuthError
from support.stack.operations import Operation
from support.stack.workload import Workload

__all__ = [
    "User",
    "create_users",
    "check_users_intact",
    "check_next_read",
    "try_duplicate_write",
    "check_user_count",
    "check_status",
]


@dataclass(frozen=True)
class User:
    """A record the scenario created and the API acknowledged: its id, key and compared values."""

    id: Any
    key: str
    expected: str
    body: dict


#: the last token per (base URL, auth): kept across steps, so a scenario logs in once, and again after a 401
_TOKENS: dict[tuple[str, str], str] = {}


class TokenAuth(httpx.Auth):
    """The workload's token on every request of an httpx client; fetched again once after a 401."""

    requires_response_body = True

    def __init__(self, auth: Auth, base: str, headers: dict[str, str], timeout: float) -> None:
        self.auth = auth
        self.base = base  # the API's URL with the workload's base_path: the login goes under it too
        self.headers = headers
        self.timeout = timeout  # seconds a token command may take
        self.fetched = 0
        self._key = (base, json.dumps(auth.to_dict(), sort_keys=True))

    @property
    def token(self) -> str | None:
        return _TOKENS.get(self._key)

    @token.setter
    def token(self, value: str) -> None:
        _TOKENS[self._key] = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token
        if token is None:
            token = self.token = yield from self._fetch()
        request.headers[self.auth.header] = self.auth.header_value(token)
        response = yield request
        if response.status_code == 401:
            token = self.token = yield from self._fetch()
            request.headers[self.auth.header] = self.auth.header_value(token)
            yield request

    def _fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        self.fetched += 1
        if not self.auth.uses_login:
            return self.auth.token_from_source(self.timeout)
        method, path, body, content_type = self.auth.login_request()
        response = yield httpx.Request(
            method, self.base + path, content=body, headers={**self.headers, "Content-Type": content_type}
        )
        return self.auth.token_from_answer(response.status_code, response.content)


@contextmanager
def workload_client(api_url: str, workload: Workload, timeout: float = 5.0, run: str = "") -> Iterator[httpx.Client]:
    """An httpx client that sends as the workload does (base_path, headers, auth); ``timeout`` s per request.

    A token that cannot be had is a :class:`CheckFailed` naming why.
    """
    base = api_url.rstrip("/") + workload.base_path
    headers = workload.header_values(run)
    auth = TokenAuth(workload.auth, base, headers, timeout) if workload.auth else None
    with httpx.Client(base_url=base, headers=headers, timeout=timeout, auth=auth) as client:
        try:
            yield client
        except AuthError as error:
            raise CheckFailed(f"no auth token for the workload: {error}") from None


def send(client: httpx.Client, operation: Operation, path: str, body: Any) -> httpx.Response:
    """Send ``body`` the way ``operation`` does (JSON or form-encoded) to ``path``."""
    data, content_type = operation.encode(body)
    return client.request(
        operation.method, path, content=data, headers={"Content-Type": content_type} if data is not None else None
    )


def create_users(api_url: str, workload: Workload, count: int, timeout: float = 5.0) -> list[User]:
    """Create ``count`` records through the API; every one must be acknowledged with a 2xx."""
    run = f"seed-{uuid.uuid4().hex[:8]}"
    users = []
    with workload_client(api_url, workload, timeout, run) as client:
        for i in range(count):
            key, path, body, expected = workload.record(run, i)
            response = send(client, workload.write, path, body)
            if not response.is_success:
                raise CheckFailed(
                    f"could not create record {i + 1} of {count}: {response.status_code} {response.text[:200]}"
                )
            users.append(User(response.json().get(workload.id_field), key, expected, body))
    return users


def check_users_intact(api_url: str, dsn: str, workload: Workload, users: list[User], timeout: float = 5.0) -> None:
    """Every record in ``users`` is served by the API's read path and stored in the database unchanged."""
    if not users:
        raise CheckFailed(f"no records were created in this scenario: add a 'Given N {workload.records} exist' step")
    wrong = []
    with workload_client(api_url, workload, timeout) as client:
        for user in users:
            response = client.request(workload.read_method, workload.read_path_for(user.id))
            if response.status_code != 200:
                wrong.append(f"{user.key}: API answered {response.status_code}")
            elif not workload.matches(response.json(), user.expected):
                wrong.append(f"{user.key}: API serves {response.text[:120]}")
    stored = database.rows_for_keys(dsn, workload, [u.key for u in users])
    for user in users:
        if user.key not in stored:
            wrong.append(f"{user.key}: missing from the database")
        elif "\t".join(stored[user.key]) != user.expected:
            wrong.append(f"{user.key}: changed in the database")
    if wrong:
        raise CheckFailed(
            f"{len(wrong)} problem(s) with {len(users)} records that should have survived: " + "; ".join(wrong[:10])
        )


def check_next_read(api_url: str, workload: Workload, users: list[User], timeout: float = 5.0) -> None:
    """One read of a record the scenario created is answered 200 with its content.

    The read must reach the database, so a pool that kept dead connections across
    a database restart fails it.
    """
    if not users:
        raise CheckFailed(f"no records exist to read: add a 'Given N {workload.records} exist' step")
    try:
        with workload_client(api_url, workload, timeout) as client:
            response = client.request(workload.read_method, workload.read_path_for(users[0].id))
    except httpx.HTTPError as error:
        raise CheckFailed(f"the first request after the fault got no answer: {type(error).__name__}: {error}") from None
    if response.status_code != 200:
        raise CheckFailed(
            f"the first request after the fault was answered {response.status_code}, not 200: {response.text[:200]}"
        )
    if not workload.matches(response.json(), users[0].expected):
        raise CheckFailed(f"the first request after the fault served wrong content: {response.text[:200]}")


def try_duplicate_write(api_url: str, workload: Workload, existing: list[User], timeout: float = 5.0) -> httpx.Response:
    """Try to create a record with a key that is already taken."""
    if not existing:
        raise CheckFailed(f"no records exist to collide with: add a 'Given N {workload.records} exist' step")
    body = dict(existing[0].body)
    body = {k: ("duplicate" if k != _key_field(workload) and isinstance(v, str) else v) for k, v in body.items()}
    with workload_client(api_url, workload, timeout) as client:
        return send(client, workload.write, workload.create_path, body)


def _key_field(workload: Workload) -> str:
    return next(name for name, value in workload.create_body.items() if "{key}" in str(value))


def check_status(response: httpx.Response | str, status: int, what: str) -> None:
    """``response`` was the HTTP ``status`` with a JSON body; else fail naming ``what`` and the answer."""
    if isinstance(response, str) or response.status_code != status:
        got = response if isinstance(response, str) else f"{response.status_code} {response.text[:200]}"
        raise CheckFailed(f"{what} was expected to be answered {status}, got {got}")
    try:
        response.json()
    except ValueError:
        raise CheckFailed(f"the {status} answer to {what} has no JSON body: {response.text[:200]!r}") from None


def check_user_count(dsn: str, workload: Workload, expected: int) -> None:
    """The database holds exactly ``expected`` records."""
    actual = database.count_records(dsn, workload)
    if actual > expected:
        raise CheckFailed(f"the database holds {actual} records, expected {expected}: a failed write left a row")
    if actual < expected:
        raise CheckFailed(f"the database holds {actual} records, expected {expected}: rows were lost")
