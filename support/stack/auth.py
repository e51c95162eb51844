"""How the workload authenticates: a login whose answer gives a token, or a token from a command or a variable.

``[workload.auth]`` of a stack file. The token is sent as ``header: scheme token``
on every request of the workload (load and record steps alike) and fetched
again when the service answers 401, so a service that expires or revokes its
tokens is still driven. The login request goes under the workload's
``base_path`` like every other request. Everything here is JSON-able, since it
travels to the load worker's process.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

__all__ = ["Auth", "AuthError", "parse_auth"]


class AuthError(RuntimeError):
    """No token could be had: the login was refused, its answer had no token, the command failed."""


@dataclass(frozen=True)
class Auth:
    """Where the token comes from and how it is sent."""

    login_method: str = "POST"
    #: the login request's path (under base_path); empty when the token comes from a command or a variable
    login_path: str = ""
    login_json: Any = None
    login_form: dict | None = None
    #: the field of the login answer (a JSON object) that holds the token
    token_field: str = "access_token"
    header: str = "Authorization"
    #: put before the token in the header, e.g. "Bearer"; empty sends the bare token
    scheme: str = "Bearer"
    token_command: tuple[str, ...] = ()
    token_env: str = ""

    def login_request(self) -> tuple[str, str, bytes | None, str]:
        """(method, path, body, content type) of the login request."""
        if self.login_form is not None:
            return (
                self.login_method,
                self.login_path,
                urlencode(self.login_form).encode(),
                "application/x-www-form-urlencoded",
            )
        body = None if self.login_json is None else json.dumps(self.login_json).encode()
        return self.login_method, self.login_path, body, "application/json"

    def token_from_answer(self, status: int | None, body: bytes) -> str:
        """The token in a login answer; :class:`AuthError` naming what came back otherwise."""
        if status is None or not 200 <= status < 300:
            raise AuthError(f"the login {self.login_method} {self.login_path} was answered {status}: {body[:200]!r}")
        try:
            token = json.loads(body).get(self.token_field)
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"the login answer has no string field {self.token_field!r}: {body[:200]!r}")
        return token

    def token_from_source(self, timeout: float = 10.0) -> str:
        """The token of ``token_command`` (its stdout, stripped; ``timeout`` s at most) or ``token_env``."""
        if self.token_env:
            token = os.environ.get(self.token_env, "")
            if not token:
                raise AuthError(f"token_env: the variable {self.token_env} is not set or empty")
            return token
        try:
            done = subprocess.run(list(self.token_command), capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise AuthError(f"token_command {list(self.token_command)} could not run: {error}") from None
        if done.returncode != 0 or not done.stdout.strip():
            raise AuthError(
                f"token_command {list(self.token_command)} exited {done.returncode} without a token: "
                f"{(done.stderr or done.stdout)[-300:]!r}"
            )
        return done.stdout.strip()

    @property
    def uses_login(self) -> bool:
        return bool(self.login_path)

    def header_value(self, token: str) -> str:
        """What the header carries for ``token``."""
        return f"{self.scheme} {token}" if self.scheme else token

    def to_dict(self) -> dict:
        return {
            "login_method": self.login_method,
            "login_path": self.login_path,
            "login_json": self.login_json,
            "login_form": self.login_form,
            "token_field": self.token_field,
            "header": self.header,
            "scheme": self.scheme,
            "token_command": list(self.token_command),
            "token_env": self.token_env,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Auth:
        return cls(**{**data, "token_command": tuple(data.get("token_command", ()))})


_AUTH_KEYS = {"login", "token_field", "header", "scheme", "token_command", "token_env"}


def parse_auth(table: Any, where: str) -> Auth:
    """``[workload.auth]`` as an :class:`Auth`; :class:`ValueError` in one line naming the field."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table")
    if "login_path" in table:  # the to_dict form, as it travels to the worker
        return Auth.from_dict(table)
    unknown = sorted(set(table) - _AUTH_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_AUTH_KEYS))}")
    sources = [k for k in ("login", "token_command", "token_env") if k in table]
    if len(sources) != 1:
        raise ValueError(
            f'{where} needs exactly one of login = {{ path = "/token", form = {{...}} }}, '
            f'token_command = [...] or token_env = "NAME"; got {", ".join(sources) or "none"}'
        )
    for name in ("token_field", "header", "scheme", "token_env"):
        if name in table and not isinstance(table[name], str):
            raise ValueError(f"{where}.{name} must be a string, got {table[name]!r}")
    options = {k: table[k] for k in ("token_field", "header", "scheme", "token_env") if k in table}
    if "token_command" in table:
        command = table["token_command"]
        if isinstance(command, str):
            command = command.split()
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            raise ValueError(f"{where}.token_command must be a list of strings, got {table['token_command']!r}")
        options["token_command"] = tuple(command)
    if "login" in table:
        login = table["login"]
        if not isinstance(login, dict) or set(login) - {"method", "path", "json", "form"}:
            raise ValueError(f"{where}.login takes method, path and json or form, got {login!r}")
        path = login.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"{where}.login.path={path!r} must be a path starting with /")
        if "json" in login and "form" in login:
            raise ValueError(f"{where}.login takes json or form, not both")
        form = login.get("form")
        if form is not None and (not isinstance(form, dict) or not all(isinstance(v, str) for v in form.values())):
            raise ValueError(f"{where}.login.form must be a table of strings, got {form!r}")
        method = login.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in ("POST", "PUT", "GET"):
            raise ValueError(f"{where}.login.method={method!r}: use POST, PUT or GET")
        options.update(login_method=method.upper(), login_path=path, login_json=login.get("json"), login_form=form)
    return Auth(**options)
