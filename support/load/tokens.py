"""The load worker's headers and auth token: fetched before the load starts, and again after a 401.

The headers go into :attr:`support.load.client.HttpClient.extra_headers`, so the
hot path pays nothing for them. ``generation`` changes with every new token:
the worker asks for a new one only for a 401 to the current token, so a burst
of 401s to one token makes one login, not one per request.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from support.load.client import Answer, HttpClient
from support.stack.auth import AuthError
from support.stack.workload import Workload

__all__ = ["Tokens"]


class Tokens:
    """The workload's static headers and its current auth token on one client."""

    def __init__(self, workload: Workload, client: HttpClient, base: str, run: str, timeout: float) -> None:
        self.auth = workload.auth
        self.client = client
        self.base = base  # the URL path every request goes under (the base URL's and the workload's base_path)
        self.timeout = timeout  # seconds a login or token command may take
        self.static = "".join(f"{k}: {v}\r\n" for k, v in workload.header_values(run).items()).encode("latin-1")
        self.generation = 0
        self.refreshing = False
        self.fetched = 0  # tokens fetched, the first included

    def set_token(self, token: str | None) -> None:
        """Send the static headers, and ``token`` in the auth header, with every request from now on."""
        lines = self.static
        if token is not None and self.auth is not None:
            lines += f"{self.auth.header}: {self.auth.header_value(token)}\r\n".encode("latin-1")
        self.client.extra_headers = lines
        self.generation += 1

    def fetch(self, done: Callable[[str | None, str], None]) -> None:
        """Get a token (login request, command or variable); ``done(token, "")`` or ``done(None, why)``."""
        auth = self.auth
        assert auth is not None
        if not auth.uses_login:
            # a command may take a while: off the loop, so the schedule keeps going
            future = asyncio.get_running_loop().run_in_executor(None, auth.token_from_source, self.timeout)

            def fetched(f: asyncio.Future) -> None:
                error = f.exception()
                if error is not None:
                    done(None, str(error))
                else:
                    done(f.result(), "")

            future.add_done_callback(fetched)
            return

        def answered(answer: Answer) -> None:
            try:
                token = auth.token_from_answer(answer.status, answer.body if answer.status else answer.error.encode())
            except AuthError as error:
                done(None, str(error))
            else:
                done(token, "")

        method, path, body, content_type = auth.login_request()
        current, self.client.extra_headers = self.client.extra_headers, self.static
        try:  # send makes the request's bytes at once: the login carries the static headers, no old token
            self.client.send(method, self.base + path, body, answered, content_type)
        finally:
            self.client.extra_headers = current

    def refresh(self) -> None:
        """After a 401 to the current token: fetch a new one (one fetch at a time)."""
        if self.refreshing or self.auth is None:
            return
        self.refreshing = True

        def done(token: str | None, why: str) -> None:
            self.refreshing = False
            if token is None:
                print(f"loadgen: could not fetch a new token after a 401: {why}", file=sys.stderr)
            else:
                self.fetched += 1
                self.set_token(token)

        self.fetch(done)

    async def authenticate(self) -> None:
        """The static headers, and the first token before the schedule starts; :class:`AuthError` without one."""
        self.set_token(None)
        if self.auth is None:
            return
        got: asyncio.Future = asyncio.get_running_loop().create_future()

        def deliver(token: str | None, why: str) -> None:
            if not got.done():
                got.set_result((token, why))

        self.fetch(deliver)
        try:
            token, why = await asyncio.wait_for(got, self.timeout + 1.0)
        except TimeoutError:
            raise AuthError(f"no token within {self.timeout + 1.0:g} s") from None
        if token is None:
            raise AuthError(why)
        self.fetched += 1
        self.set_token(token)
