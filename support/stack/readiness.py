"""Readiness in domain terms: PostgreSQL runs a query, the API answers its health path."""
from __future__ import annotations

import httpx
import psycopg2

__all__ = ["database_answers", "http_answers"]


def database_answers(dsn: str) -> bool:
    """True when ``SELECT 1`` runs on ``dsn`` (connect timeout 2 s); raises the driver's error otherwise."""
    conn = psycopg2.connect(dsn, connect_timeout=2, application_name="chaos-suite-probe")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)
    finally:
        conn.close()


def http_answers(url: str) -> bool:
    """True when ``GET url`` gets any HTTP answer within 1 s: the process is up, whatever it says of its database."""
    return httpx.get(url, timeout=1.0).status_code < 600
