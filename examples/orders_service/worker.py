"""The orders worker: ships every pending order once, whatever happens to it or to its database link.

It takes a batch of pending orders (``FOR UPDATE SKIP LOCKED``), ships them (a
``shipments`` row each, and ``PACKING_SECONDS`` of work), and marks them
processed, all in one transaction: a worker killed mid-job leaves its batch
pending for the next one, never half done. On any database error it drops the
connection and connects again, so a cut link costs a backlog, not the worker.

``--variant`` runs a worker that lacks one of these properties, for the tests that
prove the example's features can fail (tests/test_orders_example.py):

- ``lose_taken``: claims its batch in a transaction of its own, then ships it: a
  kill mid-job leaves the batch taken by nobody, never shipped;
- ``done_before_work``: marks the batch processed first, then ships it: a kill
  mid-job leaves orders processed without a shipment;
- ``no_reconnect``: connects once and, after an error, keeps retrying on the dead
  connection: a cut link stops it for good.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time

import psycopg2

DSN = os.environ["ORDERS_DB"]
PACKING_SECONDS = 0.2  # per batch: the work a kill interrupts
# the variants pack longer, so a kill at any moment of the load lands inside a batch's unsafe window and their
# proofs cannot pass by luck (at 0.2 s one kill in a CI run landed between batches and found nothing lost)
VARIANT_PACKING_SECONDS = 1.0
IDLE_POLL_SECONDS = 0.05
RECONNECT_SECONDS = 0.5
BATCH = 100
PENDING = "SELECT order_id FROM orders WHERE status = 'pending' ORDER BY order_id LIMIT %s FOR UPDATE SKIP LOCKED"


def connect():
    # keepalives and tcp_user_timeout: a link that goes silent is noticed in seconds, not minutes
    return psycopg2.connect(DSN, connect_timeout=2, application_name="orders-worker", keepalives=1,
                            keepalives_idle=1, keepalives_interval=1, keepalives_count=2, tcp_user_timeout=3000,
                            options="-c statement_timeout=2000 -c idle_in_transaction_session_timeout=5000")


def ship(cur, ids: list[int], packing_seconds: float = PACKING_SECONDS) -> None:
    cur.execute("INSERT INTO shipments (order_id) SELECT unnest(%s::bigint[])", (ids,))
    time.sleep(packing_seconds)


def mark_processed(cur, ids: list[int]) -> None:
    cur.execute("UPDATE orders SET status = 'processed', processed_at = now() WHERE order_id = ANY(%s)", (ids,))


def batch(conn, variant: str) -> int:
    """Process one batch of pending orders; how many it took."""
    with conn.cursor() as cur:
        cur.execute(PENDING, (BATCH,))
        ids = [row[0] for row in cur.fetchall()]
        if not ids:
            conn.commit()
            return 0
        if variant == "lose_taken":
            cur.execute("UPDATE orders SET status = 'taken' WHERE order_id = ANY(%s)", (ids,))
            conn.commit()
            ship(cur, ids, VARIANT_PACKING_SECONDS)
            mark_processed(cur, ids)
        elif variant == "done_before_work":
            mark_processed(cur, ids)
            conn.commit()
            time.sleep(VARIANT_PACKING_SECONDS)
            cur.execute("INSERT INTO shipments (order_id) SELECT unnest(%s::bigint[])", (ids,))
        else:  # the example: ship and mark in the one transaction that holds the batch's rows
            ship(cur, ids)
            mark_processed(cur, ids)
    conn.commit()
    return len(ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=("lose_taken", "done_before_work", "no_reconnect"))
    variant = parser.parse_args().variant or ""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"orders worker started{' (variant ' + variant + ')' if variant else ''}", flush=True)
    conn = None
    while True:
        try:
            if conn is None:
                conn = connect()
            if batch(conn, variant) == 0:
                time.sleep(IDLE_POLL_SECONDS)
        except psycopg2.Error as error:
            print(f"orders worker: {type(error).__name__}: {str(error).strip().splitlines()[0:1]}", flush=True)
            if variant == "no_reconnect" and conn is not None:
                with contextlib.suppress(psycopg2.Error):
                    conn.rollback()  # the bug: the dead connection is kept
            else:
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(RECONNECT_SECONDS)


if __name__ == "__main__":
    main()
