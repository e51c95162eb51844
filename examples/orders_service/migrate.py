"""The orders service's migrations, run by the suite before every start of the API (``before_start``).

The API itself never creates a table: if this did not run, its first write would
fail. Each migration runs once, recorded in ``schema_migrations``; the login the
workload uses is seeded (or its password reset) on every run.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import secrets

import psycopg2

MIGRATIONS = [
    ("001_orders", """CREATE TABLE orders (
        order_id bigserial PRIMARY KEY, reference text UNIQUE NOT NULL, item text NOT NULL, note text NOT NULL,
        status text NOT NULL DEFAULT 'pending', created_at timestamptz NOT NULL DEFAULT now(),
        processed_at timestamptz)"""),
    ("002_pending_index", "CREATE INDEX orders_pending ON orders (order_id) WHERE status = 'pending'"),
    ("003_shipments", """CREATE TABLE shipments (
        shipment_id bigserial PRIMARY KEY, order_id bigint NOT NULL, shipped_at timestamptz NOT NULL DEFAULT now())"""),
    ("004_api_users", "CREATE TABLE api_users (username text PRIMARY KEY, salt text NOT NULL, hash text NOT NULL)"),
    # the payments service's (payments.py): one charge per order reference
    ("005_charges", """CREATE TABLE charges (
        charge_id bigserial PRIMARY KEY, reference text UNIQUE NOT NULL, charged_at timestamptz NOT NULL DEFAULT now())"""),
]


def password_hash(password: str, salt: str) -> str:
    """The stored form of a password (PBKDF2-SHA256); the API checks logins against it."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10_000).hex()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user", required=True, help="the login to seed")
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    with psycopg2.connect(os.environ["ORDERS_DB"], connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY)")
        cur.execute("LOCK TABLE schema_migrations")  # two starts at once apply each migration once
        cur.execute("SELECT name FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for name, sql in MIGRATIONS:
            if name not in done:
                cur.execute(sql)
                cur.execute("INSERT INTO schema_migrations VALUES (%s)", (name,))
                print(f"migrate: applied {name}", flush=True)
        salt = secrets.token_hex(8)
        cur.execute("""INSERT INTO api_users VALUES (%s, %s, %s)
                       ON CONFLICT (username) DO UPDATE SET salt = EXCLUDED.salt, hash = EXCLUDED.hash""",
                    (args.user, salt, password_hash(args.password, salt)))
    print(f"migrate: schema up to date, login {args.user!r} seeded", flush=True)


if __name__ == "__main__":
    main()
