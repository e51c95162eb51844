"""A notes service the suite does not ship with: the worked example of bringing your own service.

Standard library HTTP server plus psycopg2, one connection per request (so it
has no pool to go stale), configured by NOTES_DB (a libpq URL) and listening
where ``--port`` says. Not a framework showcase: just a different service with
a different API shape, to show that the suite's features run against it
unchanged through its stack file (``stack.toml`` beside this file).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.errors

DSN = os.environ["NOTES_DB"]
SCHEMA = """CREATE TABLE IF NOT EXISTS notes (
    note_id bigserial PRIMARY KEY, slug text UNIQUE NOT NULL, title text NOT NULL, body text NOT NULL)"""


def connect():
    return psycopg2.connect(DSN, connect_timeout=2, application_name="notes",
                            options="-c statement_timeout=1500 -c lock_timeout=1000")


def create_schema_when_possible(stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with connect() as conn, conn.cursor() as cur:
                cur.execute(SCHEMA)
            return
        except psycopg2.Error:
            stop.wait(0.5)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)

    def database(self, work):
        try:
            conn = connect()
        except psycopg2.Error as error:
            return self.answer(503, {"error": "database unavailable", "detail": str(error).splitlines()[0]})
        try:
            with conn, conn.cursor() as cur:
                status, body = work(cur)
            # answered only after the commit: an acknowledged note is a stored note
            return self.answer(status, body)
        except psycopg2.errors.UniqueViolation:
            return self.answer(409, {"error": "slug taken"})
        except psycopg2.Error as error:
            return self.answer(503, {"error": "database unavailable", "detail": str(error).splitlines()[0]})
        finally:
            conn.close()

    def do_GET(self) -> None:
        if self.path == "/healthz":
            def probe(cur):
                cur.execute("SELECT 1")
                return 200, {"ok": True}
            return self.database(probe)
        found = re.fullmatch(r"/notes/(\d+)", self.path)
        if not found:
            return self.answer(404, {"error": "no such path"})

        def read(cur):
            cur.execute("SELECT note_id, slug, title, body FROM notes WHERE note_id = %s", (int(found[1]),))
            row = cur.fetchone()
            if row is None:
                return 404, {"error": "no such note"}
            return 200, dict(zip(("note_id", "slug", "title", "body"), row))
        self.database(read)

    def do_POST(self) -> None:
        if self.path != "/notes":
            return self.answer(404, {"error": "no such path"})
        try:
            note = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            values = (str(note["slug"]), str(note["title"]), str(note["body"]))
        except (ValueError, KeyError, TypeError):
            return self.answer(422, {"error": "slug, title and body are required"})

        def write(cur):
            cur.execute("INSERT INTO notes (slug, title, body) VALUES (%s, %s, %s) RETURNING note_id", values)
            note_id = cur.fetchone()[0]
            return 201, {"note_id": note_id, "slug": values[0], "title": values[1], "body": values[2]}
        self.database(write)

    def log_message(self, format: str, *args) -> None:
        print(f"{time.strftime('%H:%M:%S')} {self.command} {self.path} {args[1] if len(args) > 1 else ''}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    stop = threading.Event()
    threading.Thread(target=create_schema_when_possible, args=(stop,), daemon=True).start()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"notes listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    stop.set()


if __name__ == "__main__":
    main()
