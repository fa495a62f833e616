"""No blocking database call on the gateway's event loop: while another connection holds
the SQLite write lock, the REDCap drain loop waits in a worker thread and every other
request is still answered."""

from __future__ import annotations

import sqlite3
import time

import httpx

from .conftest import Stack


def test_a_held_write_lock_does_not_freeze_the_gateway(stack: Stack) -> None:
    database = stack.engine.url.database
    # Waits its turn for the lock (the drain may be writing), then keeps it.
    holder = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # what a long write by any request looks like
        # The drain polls every 0.2 s; each poll now waits on the lock (30 s busy timeout).
        time.sleep(1.0)
        with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
