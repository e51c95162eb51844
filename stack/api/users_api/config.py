"""Settings of the users API, read once from environment variables.

Every bad value raises :class:`ConfigError` whose message is one line that names
the variable, so a misconfigured start fails with a readable error rather than a
traceback or, worse, a silently substituted default.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["ConfigError", "Settings", "load_settings", "redact"]

DRIVER = "postgresql+psycopg2"
URL_EXAMPLE = f"{DRIVER}://user:password@127.0.0.1:5432/dbname"

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.I)
_KV_PASSWORD = re.compile(r"(?P<key>\b(?:password|passwd|pwd)\s*[=:]\s*)(?P<q>['\"]?)[^\s'\"]+(?P=q)", re.I)


def redact(text: str) -> str:
    """``text`` with passwords in URLs and ``password=...`` pairs masked as ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return _KV_PASSWORD.sub(r"\g<key>***", text)


class ConfigError(ValueError):
    """One configuration variable has a bad value; ``variable`` names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings; durations in seconds unless the name ends in ``_ms``."""

    # repr=False: the URL carries the password, and dataclass reprs end up in logs.
    database_url: str = field(repr=False)
    pool_size: int = 5
    max_overflow: int = 0
    pool_timeout: float = 1.0
    connect_timeout: int = 2
    statement_timeout_ms: int = 1500
    lock_timeout_ms: int = 1000
    request_timeout: float = 3.0
    health_timeout: float = 0.8
    session_seconds: float = 1800.0
    app_name: str = "users-api"

    @property
    def database(self) -> str:
        """The database URL with its password masked, safe to print."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def pool_capacity(self) -> int:
        """Most connections the request pool opens (pool_size + max_overflow)."""
        return self.pool_size + self.max_overflow


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    # An empty variable means "not set": `FOO= cmd` is how shells unset for one command.
    return None if value is None or value.strip() == "" else value.strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be an integer >= {minimum}, got {raw!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds > 0, got {raw!r}") from None
    # nan and inf parse as floats but would disable the very deadline they configure.
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(name, f"must be a number of seconds > 0, got {raw!r}")
    return value


def _database_url(env: Mapping[str, str]) -> str:
    raw = _raw(env, "DATABASE_URL")
    if raw is None:
        raise ConfigError("DATABASE_URL", f"is required, e.g. {URL_EXAMPLE}")
    try:
        url: URL = make_url(raw)
    except ArgumentError:
        # Never echo the raw value: it may hold a password.
        raise ConfigError("DATABASE_URL", f"is not a valid URL, expected {URL_EXAMPLE}") from None
    if url.drivername not in ("postgresql", DRIVER):
        raise ConfigError("DATABASE_URL", f"must use {DRIVER}://, got {url.drivername}://")
    if not url.database:
        raise ConfigError("DATABASE_URL", f"must name a database, expected {URL_EXAMPLE}")
    return url.set(drivername=DRIVER).render_as_string(hide_password=False)


def _app_name(env: Mapping[str, str]) -> str:
    value = _raw(env, "APP_NAME") or "users-api"
    # PostgreSQL truncates application_name to 63 bytes and replaces non-ASCII with '?':
    # refuse instead, so pg_stat_activity shows exactly what was configured.
    if len(value) > 63 or not all(32 <= ord(c) < 127 for c in value):
        raise ConfigError("APP_NAME", f"must be 1-63 printable ASCII characters, got {value!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse settings from ``env`` (default ``os.environ``); raise :class:`ConfigError`."""
    env = os.environ if env is None else env
    return Settings(
        database_url=_database_url(env),
        pool_size=_int(env, "DB_POOL_SIZE", 5, 1),
        max_overflow=_int(env, "DB_MAX_OVERFLOW", 0, 0),
        pool_timeout=_seconds(env, "DB_POOL_TIMEOUT", 1.0),
        connect_timeout=_int(env, "DB_CONNECT_TIMEOUT", 2, 1),
        statement_timeout_ms=_int(env, "DB_STATEMENT_TIMEOUT_MS", 1500, 0),
        lock_timeout_ms=_int(env, "DB_LOCK_TIMEOUT_MS", 1000, 0),
        request_timeout=_seconds(env, "REQUEST_TIMEOUT", 3.0),
        health_timeout=_seconds(env, "HEALTH_TIMEOUT", 0.8),
        session_seconds=_seconds(env, "SESSION_SECONDS", 1800.0),
        app_name=_app_name(env),
    )
