"""Broken variant of the users API: its pool is pinned to the first primary's own address.

At start it asks the database behind its balancer which server answered
(``inet_server_port()``) and then connects to that server directly, as a service
does that resolves its database's address once and caches it. After a failover
it keeps talking to the old primary, which is dead or read-only, so "the API
recovers" must fail against it. Start it like the real one, with this directory
and ``stack/api`` on the path::

    PYTHONPATH=stack/api:tests/broken_apis python -m uvicorn pinned_primary:app
"""

from __future__ import annotations

import os

import psycopg2
from sqlalchemy.engine import make_url
from users_api.main import create_app

__all__ = ["app"]


def _pinned(url: str) -> str:
    parsed = make_url(url)
    with psycopg2.connect(
        host=parsed.host, port=parsed.port, dbname=parsed.database, user=parsed.username,
        password=parsed.password, connect_timeout=5,
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT inet_server_port()")
        port = cur.fetchone()[0]
    conn.close()
    return parsed.set(host="127.0.0.1", port=int(port)).render_as_string(hide_password=False)


os.environ["DATABASE_URL"] = _pinned(os.environ["DATABASE_URL"])
app = create_app()
