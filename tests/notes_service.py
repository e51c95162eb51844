"""A small notes service for the workload tests: a form login, a /v1 prefix, 401 without a valid token.

Standard library only (plus psycopg2 for its PostgreSQL), served by threads of
the test process on 127.0.0.1, so a test can revoke every token mid-load and see
the load worker log in again.

- ``POST /v1/token`` (form ``username``, ``password``; OAuth2 password flow) -> ``{"access_token", "token_type"}``
- ``POST /v1/notes`` (JSON ``slug``, ``title``) -> 201 ``{"note_id", "slug", "title"}``, stored in ``notes``
- ``GET /v1/notes/{note_id}`` -> the note; ``GET /v1/notes`` -> ``{"count": n}``
- anything else under /v1 without ``Authorization: Bearer <valid token>`` -> 401; outside /v1 -> 404
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import psycopg2

from support.core.ports import LOOPBACK, free_port

USERNAME, PASSWORD = "chaos", "s3cret"
SCHEMA = "CREATE TABLE IF NOT EXISTS notes (note_id serial PRIMARY KEY, slug text UNIQUE NOT NULL, title text NOT NULL)"


class NotesService:
    """The service; :meth:`revoke` invalidates every token it gave."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.tokens: set[str] = set()
        self.logins = 0
        self.unauthorized = 0
        self.lock = threading.Lock()
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(SCHEMA)
            cur.execute("TRUNCATE notes RESTART IDENTITY")
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def revoke(self) -> None:
        """Every token given so far is refused from now on."""
        with self.lock:
            self.tokens.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the load worker expects

            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def authorized(self) -> bool:
                scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
                with service.lock:
                    ok = scheme == "Bearer" and token in service.tokens
                    service.unauthorized += not ok
                return ok

            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                data = self.body()
                if self.path == "/v1/token":
                    form = {k: v[0] for k, v in parse_qs(data.decode()).items()}
                    if self.headers.get("Content-Type") != "application/x-www-form-urlencoded" or (
                        form.get("username"),
                        form.get("password"),
                    ) != (USERNAME, PASSWORD):
                        return self.answer(400, {"detail": "incorrect username or password"})
                    token = secrets.token_urlsafe(16)
                    with service.lock:
                        service.tokens.add(token)
                        service.logins += 1
                    return self.answer(200, {"access_token": token, "token_type": "bearer"})
                if self.path != "/v1/notes":
                    return self.answer(404, {"detail": "not found"})
                if not self.authorized():
                    return self.answer(401, {"detail": "not authenticated"})
                note = json.loads(data)
                with psycopg2.connect(service.dsn) as conn, conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO notes (slug, title) VALUES (%s, %s) RETURNING note_id",
                        (note["slug"], note["title"]),
                    )
                    ident = cur.fetchone()[0]
                conn.close()
                self.answer(201, {"note_id": ident, "slug": note["slug"], "title": note["title"]})

            def do_GET(self) -> None:  # noqa: N802
                if not self.path.startswith("/v1/"):
                    return self.answer(404, {"detail": "not found"})
                if not self.authorized():
                    return self.answer(401, {"detail": "not authenticated"})
                with psycopg2.connect(service.dsn) as conn, conn.cursor() as cur:
                    if self.path == "/v1/notes":
                        cur.execute("SELECT count(*) FROM notes")
                        row = {"count": cur.fetchone()[0]}
                    else:
                        cur.execute(
                            "SELECT note_id, slug, title FROM notes WHERE note_id = %s",
                            (int(self.path.rsplit("/", 1)[1]),),
                        )
                        found = cur.fetchone()
                        row = dict(zip(("note_id", "slug", "title"), found, strict=True)) if found else None
                conn.close()
                if row is None:
                    return self.answer(404, {"detail": "no such note"})
                self.answer(200, row)

        return Handler
