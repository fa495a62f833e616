"""Audit benchmark: verifying a hash chain against raw SHA-256 over the same bytes.

Run: `.venv/bin/python bench/audit.py [--entries 100000]`

A chain of `--entries` realistic entries is written straight into a fresh database
(SQLite file, and PostgreSQL when reachable; the writing is set-up, not measured). Then
`services.core.audit.verify` reads and re-hashes the whole chain, beside the floor any
verifier needs: SHA-256 over the very bytes that are hashed (each entry's canonical JSON),
already in memory, in a bare loop. Rated by CPU time of this process (`time.process_time`,
which a loaded machine inflates far less than wall time; the database server's own CPU is
not in it, its wall time is printed beside). The ratio says how many times slower than the
floor verification is.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from bench.peak_rss import peak_rss_line  # noqa: E402
from services.core import audit  # noqa: E402
from services.core.audit import GENESIS, AuditEntry, canonical_json  # noqa: E402
from services.core.db import make_engine  # noqa: E402

ACTIONS = ("allocation.created", "participant.enrolled", "notification.sent", "list.sealed")


def chain(n: int) -> Iterator[tuple[dict, bytes]]:
    """n chained rows as the append path would write them, each with its hashed bytes."""
    prev, at = GENESIS, datetime(2026, 1, 1, tzinfo=UTC)
    for seq in range(1, n + 1):
        row = {"seq": seq, "at": at + timedelta(seconds=seq), "actor": f"user-{seq % 17}",
               "role": "study_manager", "action": ACTIONS[seq % 4], "entity_type": "allocation",
               "entity_id": f"A{seq:08d}", "record": f"R{seq % 5000:05d}",
               "before": None if seq % 3 else canonical_json({"status": "pending"}),
               "after": canonical_json({"status": "done", "number": seq, "note": "café"}),
               "reason": None, "correlation_id": uuid.UUID(int=seq).hex, "prev_hash": prev}
        body = {**row, "at": audit._utc_iso(row["at"])}
        data = canonical_json(body).encode()
        row["hash"] = prev = hashlib.sha256(data).hexdigest()
        yield row, data


def fill(engine, n: int) -> list[bytes]:  # noqa: ANN001
    AuditEntry.__table__.create(engine)  # type: ignore[attr-defined]
    hashed: list[bytes] = []
    batch: list[dict] = []
    with engine.begin() as conn:
        for row, data in chain(n):
            hashed.append(data)
            batch.append(row)
            if len(batch) == 5000:
                conn.execute(insert(AuditEntry.__table__), batch)  # type: ignore[attr-defined]
                batch = []
        if batch:
            conn.execute(insert(AuditEntry.__table__), batch)  # type: ignore[attr-defined]
    return hashed


def bench(name: str, url: str, n: int) -> None:
    engine = make_engine(url)
    hashed = fill(engine, n)
    cpu, wall = time.process_time(), time.perf_counter()
    with Session(engine) as session:
        report = audit.verify(session)
    ours, ours_wall = time.process_time() - cpu, time.perf_counter() - wall
    assert report.ok and report.length == n, report
    cpu = time.process_time()
    sha256 = hashlib.sha256
    for data in hashed:
        sha256(data).hexdigest()
    base = time.process_time() - cpu
    mib = sum(map(len, hashed)) / 2**20
    rate, base_rate = n / ours, n / base
    print(f"verify {name:<10} {n:>9,} entries ({mib:,.0f} MiB hashed) {rate:>10,.0f} entries/s "
          f"(cpu {ours:5.2f} s, wall {ours_wall:5.2f} s) | baseline raw SHA-256 same bytes: "
          f"{base_rate:>10,.0f} /s | ours/baseline = {rate / base_rate:4.2f}x")
    engine.dispose()


@contextmanager
def databases(postgres_admin: str) -> Iterator[list[tuple[str, str]]]:
    """A fresh SQLite file and, when reachable, a fresh PostgreSQL database."""
    found: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        found.append(("sqlite", f"sqlite:///{Path(tmp) / 'audit.db'}"))
        name, admin = f"tailor_bench_{uuid.uuid4().hex[:10]}", None
        try:
            admin = create_engine(postgres_admin, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            found.append(("postgresql", postgres_admin.rsplit("/", 1)[0] + f"/{name}"))
        except Exception as exc:
            print(f"postgresql     skipped: unreachable ({type(exc).__name__})")
            admin = None
        try:
            yield found
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="length of the chain")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "TAILOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
                        help="admin URL of a PostgreSQL server (skipped when unreachable)")
    args = parser.parse_args()
    print(f"audit benchmark: Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with databases(args.postgres_url) as found:
        for name, url in found:
            bench(name, url, args.entries)
    print(peak_rss_line())


if __name__ == "__main__":
    main()
