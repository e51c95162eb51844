"""The orders API: takes orders behind an OAuth2-style login and leaves them to the worker (worker.py).

Standard library HTTP server plus psycopg2, one connection per request. Its
tables are made by ``migrate.py`` (the suite runs it before every start), never
here. ``POST /v1/token`` takes a form login (``username``, ``password``) and answers
``{"access_token": ..., "token_type": "bearer"}``; every ``/v1/orders`` request
needs ``Authorization: Bearer <token>`` (401 otherwise). ``POST /v1/orders``
charges the order at the payments service (payments.py, ``ORDERS_PAYMENTS``), then
stores it pending and answers 201 only after the commit; the worker ships it.

The payments call is what a resilient caller makes of an upstream it does not
control: each attempt has a timeout (``PAYMENT_TIMEOUT``), a 5xx, 429 or lost
answer is retried (``PAYMENT_ATTEMPTS``, ``Retry-After`` honoured) within one
budget per order (``PAYMENT_BUDGET``) and a retry budget across orders (at most
``RETRY_RATIO`` retries per first call: retries must not multiply the load on a
payments service that is slow already), and when payments still fails the order is
not stored and the client gets 503 + ``Retry-After``: never a 500, never a hang,
never an order kept unpaid. The charge is idempotent by reference, so a retry
after a timeout charges once.

``--variant`` runs an API that lacks one of these properties, for the tests that
prove the example's features can fail (tests/test_orders_example.py):

- ``passes_errors_through``: one attempt, and payments' failure is the client's:
  its 500 passed on, a lost answer a 502;
- ``no_timeout``: waits for payments as long as it takes;
- ``stores_unpaid``: when payments fails it stores the order anyway and answers 201.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2
import psycopg2.errors

DSN = os.environ["ORDERS_DB"]
SECRET = os.environ["ORDERS_SECRET"].encode()
TOKEN_SECONDS = 3600
ORDER_FIELDS = ("order_id", "reference", "item", "note", "status")
PAYMENTS = urlsplit(os.environ["ORDERS_PAYMENTS"])  # http://host:port of the payments service
PAYMENT_TIMEOUT = 0.8  # s per attempt: a payments service that hangs costs an order this, not a hang
PAYMENT_ATTEMPTS = 3
PAYMENT_BUDGET = 1.6  # s for all attempts of one order, waits included
RETRY_RATIO = 0.5  # retries allowed per first call, saved up to RETRY_SAVED
RETRY_SAVED = 10.0
_retry_tokens = RETRY_SAVED
_retry_lock = threading.Lock()


def retry_allowed(first: bool) -> bool:
    """A first call earns RETRY_RATIO of a retry; a retry spends one (False: none left, give up)."""
    global _retry_tokens
    with _retry_lock:
        if first:
            _retry_tokens = min(RETRY_SAVED, _retry_tokens + RETRY_RATIO)
            return True
        if _retry_tokens < 1:
            return False
        _retry_tokens -= 1
        return True
VARIANT = ""  # set by --variant


class PaymentFailed(Exception):
    """Payments did not charge the order; ``status`` is what the client is told, ``retry_after`` s for it."""

    def __init__(self, status: int, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


def charge_once(reference: str, timeout: float | None) -> tuple[int, str, str]:
    """One POST /v1/charges: (status, Retry-After header, detail); status 0 when no answer came."""
    conn = http.client.HTTPConnection(PAYMENTS.hostname, PAYMENTS.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/charges", json.dumps({"reference": reference}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After") or "", f"payments answered {response.status}"
    except (OSError, http.client.HTTPException) as error:
        return 0, "", f"payments gave no answer ({type(error).__name__})"
    finally:
        conn.close()


def charge(reference: str) -> None:
    """Charge the order at payments, or raise PaymentFailed (see the module's docstring)."""
    if VARIANT == "passes_errors_through":
        status, _, detail = charge_once(reference, PAYMENT_TIMEOUT)
        if not 200 <= status < 300:
            raise PaymentFailed(status or 502, detail)
        return
    deadline = time.monotonic() + PAYMENT_BUDGET
    detail, retry_after = "", 1.0
    for attempt in range(PAYMENT_ATTEMPTS):
        if not retry_allowed(first=attempt == 0):
            break
        left = deadline - time.monotonic()
        timeout = None if VARIANT == "no_timeout" else max(min(PAYMENT_TIMEOUT, left), 0.05)
        status, after, detail = charge_once(reference, timeout)
        if 200 <= status < 300:
            return
        if status and status < 500 and status != 429:
            break  # refused for good: a retry gets the same answer
        try:
            wait = float(after) if after else 0.05 * 2**attempt
        except ValueError:
            wait = 0.05 * 2**attempt
        retry_after = max(wait, 1.0)
        if time.monotonic() + wait >= deadline:
            break  # the client is told when to come back instead
        time.sleep(wait)
    raise PaymentFailed(503, detail, retry_after)


def connect():
    return psycopg2.connect(DSN, connect_timeout=2, application_name="orders-api",
                            options="-c statement_timeout=1500 -c lock_timeout=1000")


def make_token(username: str) -> str:
    payload = base64.urlsafe_b64encode(f"{username}:{int(time.time()) + TOKEN_SECONDS}".encode()).decode()
    return payload + "." + hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()


def token_valid(header: str) -> bool:
    scheme, _, token = header.partition(" ")
    payload, _, signature = token.partition(".")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            signature, hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()):
        return False
    try:
        return int(base64.urlsafe_b64decode(payload).decode().rsplit(":", 1)[1]) > time.time()
    except (ValueError, IndexError):
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: dict, retry_after: float = 0) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        if retry_after:
            self.send_header("Retry-After", str(round(retry_after)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def database(self, work):
        try:
            conn = connect()
        except psycopg2.Error as error:
            return self.answer(503, {"error": "database unavailable", "detail": str(error).splitlines()[0]})
        try:
            with conn, conn.cursor() as cur:
                status, body = work(cur)
            # answered only after the commit: an acknowledged order is a stored order
            return self.answer(status, body)
        except psycopg2.errors.UniqueViolation:
            return self.answer(409, {"error": "reference taken"})
        except psycopg2.Error as error:
            return self.answer(503, {"error": "database unavailable", "detail": str(error).splitlines()[0]})
        finally:
            conn.close()

    def do_GET(self) -> None:
        if self.path == "/health":
            def probe(cur):
                cur.execute("SELECT 1")
                return 200, {"ok": True}
            return self.database(probe)
        found = re.fullmatch(r"/v1/orders/(\d+)", self.path)
        if not found:
            self.body()
            return self.answer(404, {"error": "no such path"})
        if not token_valid(self.headers.get("Authorization", "")):
            return self.answer(401, {"error": "a bearer token from POST /v1/token is required"})

        def read(cur):
            cur.execute(f"SELECT {', '.join(ORDER_FIELDS)} FROM orders WHERE order_id = %s", (int(found[1]),))
            row = cur.fetchone()
            return (200, dict(zip(ORDER_FIELDS, row, strict=True))) if row else (404, {"error": "no such order"})
        self.database(read)

    def do_POST(self) -> None:
        data = self.body()
        if self.path == "/v1/token":  # under the same /v1 as the orders
            return self.login(parse_qs(data.decode(errors="replace")))
        if self.path != "/v1/orders":
            return self.answer(404, {"error": "no such path"})
        if not token_valid(self.headers.get("Authorization", "")):
            return self.answer(401, {"error": "a bearer token from POST /v1/token is required"})
        try:
            order = json.loads(data)
            values = (str(order["reference"]), str(order["item"]), str(order.get("note", "")))
        except (ValueError, KeyError, TypeError):
            return self.answer(422, {"error": "reference and item are required"})
        try:
            charge(values[0])
        except PaymentFailed as failed:
            print(f"{time.strftime('%H:%M:%S')} payment of {values[0]} failed: {failed.detail}", flush=True)
            if VARIANT != "stores_unpaid":  # the order is not stored: the client may retry it whole
                return self.answer(failed.status, {"error": "payment failed", "detail": failed.detail},
                                   failed.retry_after if failed.status == 503 else 0)

        def write(cur):
            cur.execute("INSERT INTO orders (reference, item, note) VALUES (%s, %s, %s) RETURNING order_id", values)
            return 201, dict(zip(ORDER_FIELDS, (cur.fetchone()[0], *values, "pending"), strict=True))
        self.database(write)

    def login(self, form: dict) -> None:
        username, password = form.get("username", [""])[0], form.get("password", [""])[0]

        def check(cur):
            cur.execute("SELECT salt, hash FROM api_users WHERE username = %s", (username,))
            row = cur.fetchone()
            if row is None or not hmac.compare_digest(
                    row[1], hashlib.pbkdf2_hmac("sha256", password.encode(), row[0].encode(), 10_000).hex()):
                return 401, {"error": "wrong username or password"}
            return 200, {"access_token": make_token(username), "token_type": "bearer"}
        self.database(check)

    def log_message(self, format: str, *args) -> None:
        print(f"{time.strftime('%H:%M:%S')} {self.command} {self.path} {args[1] if len(args) > 1 else ''}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--variant", choices=("passes_errors_through", "no_timeout", "stores_unpaid"))
    args = parser.parse_args()
    global VARIANT
    VARIANT = args.variant or ""
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"orders api listening on {args.host}:{args.port}{' (variant ' + VARIANT + ')' if VARIANT else ''}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
