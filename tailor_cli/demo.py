"""`make demo`: the local stack end to end.

Every service audits its own start (which protocol file, by hash) and announces its
audit-chain head through its outbox; the gateway consumes the announcements from the bus
and keeps them. The demo shows each service's event arriving at the gateway.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from . import registry
from .stack import LocalStack


def run_demo(home: Path, console: Console) -> int:
    shutil.rmtree(home, ignore_errors=True)
    services = registry.existing()
    stack = LocalStack(home=home, services=services)
    started = time.monotonic()
    try:
        with console.status("starting nats-server and the services…"):
            stack.start()
        console.print(f"stack ready in {time.monotonic() - started:.1f}s: "
                      f"nats-server + {', '.join(services)}")
        gateway = next(c.url for c in stack.children if c.name == "gateway")
        expected = {s for s in services if s != "gateway"}
        heads = _wait_for_heads(f"{gateway}/api/v1/audit/heads", expected, timeout=30)
        table = Table(title="Events that crossed the bus: outbox → JetStream → gateway")
        for col in ("from service", "event", "audit chain length", "head hash", "received by gateway"):
            table.add_column(col)
        for h in heads:
            table.add_row(h["service"], f"trial.v1.{h['service']}.audit_head", str(h["length"]),
                          h["head_hash"][:16] + "…", h["received_at"])
        console.print(table)
        missing = expected - {h["service"] for h in heads}
        if missing:
            console.print(f"[red]no event arrived from {sorted(missing)}[/red]")
            return 1
        console.print("[bold green]demo passed[/bold green]: every service's event reached the gateway")
        return 0
    finally:
        stack.stop()


def _wait_for_heads(url: str, expected: set[str], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    heads: list[dict] = []
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            heads = client.get(url).json()
            if expected <= {h["service"] for h in heads}:
                break
            time.sleep(0.2)
    return heads
