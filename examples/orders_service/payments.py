"""The payments service the orders API calls on every order: an upstream HTTP service of its own.

``POST /v1/charges`` with ``{"reference": ...}`` records a charge for that order
reference in the ``charges`` table (made by ``migrate.py``) and answers 201 with
``{"charge_id": ..., "reference": ...}``. It is idempotent by reference: a caller
that retries after a timeout or a lost answer charges once. ``GET /health``
answers 200 while its database answers. Standard library HTTP server plus
psycopg2 with a small pool that keeps its connections (``KeptPool``): a new
PostgreSQL connection per charge (its SCRAM login, through the suite's proxy)
costs more CPU than the charge, and a backlog of retried calls must drain.

``--variant close_delimited`` answers as an HTTP/1.0 server may: no
``Content-Length``, the body ending with the connection's close. That is legal
HTTP, not a bug of payments; it makes the close carry meaning, so a caller that
reads until the close with no deadline waits as long as the close takes
(variants/waits_for_close.toml pairs it with the ``no_timeout`` API).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.pool

DSN = os.environ["ORDERS_DB"]
CHARGE = """INSERT INTO charges (reference) VALUES (%s)
            ON CONFLICT (reference) DO UPDATE SET reference = EXCLUDED.reference RETURNING charge_id"""


class KeptPool(psycopg2.pool.ThreadedConnectionPool):
    """At most ``maxconn`` connections, opened when first needed and kept when put back.

    psycopg2's own pool keeps only ``minconn`` of the connections put back (it closed every one here, with
    minconn 0: a login per charge, 3-23 charges/s answered on this 2-core machine at load 7-9, and the API's
    calls timing out long after a fault) and opens ``minconn`` at once (payments could not start while its
    database is down).
    """

    def __init__(self, maxconn: int, *args, **kwargs) -> None:
        super().__init__(0, maxconn, *args, **kwargs)  # none opened now
        self.minconn = maxconn  # what _putconn keeps: every healthy connection put back


POOL = KeptPool(16, DSN, connect_timeout=2, application_name="orders-payments", options="-c statement_timeout=1000")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    close_delimited = False  # set by --variant close_delimited

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if self.close_delimited:  # the body ends where the connection does: the caller reads until the close
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def database(self, sql: str, args: tuple) -> tuple | None:
        try:
            conn = POOL.getconn()
        except psycopg2.pool.PoolError as error:  # every connection busy: refuse fast, the caller retries
            raise psycopg2.OperationalError(str(error)) from None
        broken = True
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, args)
                row = cur.fetchone()
            broken = False
            return row
        finally:
            POOL.putconn(conn, close=broken)  # a connection that failed is not handed out again

    def do_GET(self) -> None:
        if self.path != "/health":
            return self.answer(404, {"error": "no such path"})
        try:
            self.database("SELECT 1", ())
        except psycopg2.Error as error:
            return self.answer(503, {"error": "database unavailable", "detail": str(error).splitlines()[0]})
        self.answer(200, {"ok": True})

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/charges":
            return self.answer(404, {"error": "no such path"})
        try:
            reference = str(json.loads(data)["reference"])
        except (ValueError, KeyError, TypeError):
            return self.answer(422, {"error": "reference is required"})
        try:
            row = self.database(CHARGE, (reference,))
        except psycopg2.Error as error:
            return self.answer(503, {"error": "database unavailable", "detail": str(error).splitlines()[0]})
        self.answer(201, {"charge_id": row[0] if row else None, "reference": reference})

    def log_message(self, format: str, *args) -> None:
        print(f"{time.strftime('%H:%M:%S')} {self.command} {self.path} {args[1] if len(args) > 1 else ''}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--variant", choices=("close_delimited",))
    args = parser.parse_args()
    Handler.close_delimited = args.variant == "close_delimited"
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"orders payments listening on {args.host}:{args.port}{' (variant ' + args.variant + ')' if args.variant else ''}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
