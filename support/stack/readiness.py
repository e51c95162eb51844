"""Readiness in domain terms: PostgreSQL runs a query, the API answers its health path."""
from __future__ import annotations

import httpx

from support.stack.database import connect

__all__ = ["database_answers", "http_answers"]


def database_answers(dsn: str) -> bool:
    """True when ``SELECT 1`` runs on ``dsn`` within 2 s; raises the driver's error otherwise (no wait for a slot)."""
    with connect(dsn, 2.0, application_name="chaos-suite-probe", wait_for_slot=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone() == (1,)


def http_answers(url: str) -> bool:
    """True when ``GET url`` gets any HTTP answer within 1 s: the process is up, whatever it says of its database."""
    return httpx.get(url, timeout=1.0).status_code < 600
