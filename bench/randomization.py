"""Randomization benchmark: list generation, sealing, closure verification, allocation.

Run: `.venv/bin/python bench/randomization.py [--slots 1000000] [--seal-slots 1000000]`

Every figure is printed beside a baseline measured in the same run on the same machine,
as a ratio, because absolute speeds depend on the machine and its load. The in-process
figures (generation, sealing, closure) are rated by CPU time (`time.process_time`), which
a loaded machine inflates far less than wall time; wall seconds are printed beside them.

- generation: ours (HMAC-SHA256 stream, Fisher–Yates per block, Slot tuples) against
  the naive permuted-block generator a script would use: `random.Random(seed)` (Mersenne
  Twister, not a CSPRNG) choosing lengths and `shuffle`-ing the same blocks.
- sealing: `seal_batch` (salt, canonical encoding, padding, AES-256-GCM, leaf hash, Merkle
  root) against a bare loop of AESGCM.encrypt over same-size plaintexts with fresh nonces.
- closure: `unseal_slots` + `verify_list` against a bare AESGCM.decrypt loop.
- allocation (SQLite, and PostgreSQL when reachable): the service's `allocate` use case from
  concurrent threads, each allocation its own transaction (stratum row lock, slot unsealed
  and marked, allocation number, sealed detail, audit entry, outbox row), against the bare
  loop any allocator needs at least: lock a per-stratum counter row and bump it
  (`SELECT … FOR UPDATE` + `UPDATE`; SQLite has no FOR UPDATE: BEGIN IMMEDIATE + SELECT +
  UPDATE), same database, same clients.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peak_rss import peak_rss_line  # noqa: E402
from services.core.protocol import load_protocol  # noqa: E402
from services.randomization.domain import (  # noqa: E402
    ListCommitment,
    ListDesign,
    Slot,
    design_from_protocol,
    generate_list,
    new_list_key,
    new_seed,
    seal_batch,
    unseal_slots,
    verify_list,
)
from services.randomization.domain.sealing import associated_data  # noqa: E402

T = TypeVar("T")


class Took(float):
    """CPU seconds, with the wall seconds they took beside them."""

    wall: float


def timed(fn: Callable[[], T]) -> tuple[T, Took]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    took = Took(time.process_time() - cpu)
    took.wall = time.perf_counter() - wall
    return result, took


def report(what: str, n: int, ours: Took, baseline: Took, baseline_name: str,
           n_baseline: int | None = None) -> None:
    """Rates in slots per CPU second; the ratio says how many times slower than the baseline."""
    rate, base_rate = n / ours, (n_baseline or n) / baseline
    print(f"{what:<14} {n:>9,} slots {rate:>11,.0f} slots/s (cpu {ours:5.2f} s, wall "
          f"{ours.wall:5.2f} s) | baseline {baseline_name}: {base_rate:>11,.0f} slots/s | "
          f"baseline/ours = {base_rate / rate:5.2f}x")


def naive_generation(design: ListDesign, per_stratum: int) -> list[tuple[str, int, str]]:
    """The non-cryptographic permuted-block list: same structure, Mersenne Twister."""
    rng = random.Random(secrets.randbits(256))
    slots: list[tuple[str, int, str]] = []
    for stratum in design.strata:
        patterns = {n: stratum.block_pattern(n) for n in design.block_lengths}
        seq = 0
        while seq < per_stratum:
            block = patterns[rng.choice(design.block_lengths)].copy()
            rng.shuffle(block)
            for module in block:
                seq += 1
                slots.append((stratum.key, seq, module))
    return slots


def bench_generation(design: ListDesign, total: int) -> list[Slot]:
    per_stratum = -(-total // len(design.strata))
    slots, ours = timed(lambda: generate_list(design, new_seed(), per_stratum))
    naive, base = timed(lambda: naive_generation(design, per_stratum))
    report("generate", len(slots), ours, base, "random.Random shuffle", len(naive))
    return slots


def bench_sealing(slots: list[Slot], list_id: str, key: bytes) -> tuple[list, ListCommitment]:
    sealed, ours = timed(lambda: seal_batch(slots, key=key, list_id=list_id))
    width = len(sealed.slots[0].ciphertext) - 16
    plain, aad, aes = b" " * width, b"x" * 40, AESGCM(key)

    def bare() -> None:
        for _ in range(len(slots)):
            aes.encrypt(secrets.token_bytes(12), plain, aad)

    _, base = timed(bare)
    report("seal", len(slots), ours, base, "bare AESGCM.encrypt")
    return sealed.slots, ListCommitment(list_id).extended(sealed.commitment)


def bench_closure(rows: list, commitment: ListCommitment, list_id: str, key: bytes) -> None:
    def ours() -> None:
        verify_list(unseal_slots(rows, key=key, list_id=list_id), commitment)

    _, t_ours = timed(ours)
    aes = AESGCM(key)
    aads = [associated_data(list_id, r.stratum, r.seq) for r in rows]

    def bare() -> None:
        for r, aad in zip(rows, aads, strict=True):
            aes.decrypt(r.nonce, r.ciphertext, aad)

    _, t_base = timed(bare)
    report("unseal+verify", len(rows), t_ours, t_base, "bare AESGCM.decrypt")


# ── database allocation ───────────────────────────────────────────────────────────────


@contextmanager
def databases(postgres_admin: str) -> Iterator[list[tuple[str, str]]]:
    """A fresh SQLite file and, when reachable, a fresh PostgreSQL database."""
    from sqlalchemy import create_engine, text

    found: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        found.append(("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}"))
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


def run_clients(clients: int, jobs: list[T], work: Callable[[T], object]) -> float:
    """Seconds for `clients` threads to run `work` over `jobs`."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for _ in pool.map(work, jobs):
            pass
    return time.perf_counter() - start


def bare_lock_loop(engine, strata: list[str], n: int, clients: int) -> float:  # noqa: ANN001
    """The floor: lock a per-stratum counter row, read it, bump it, commit."""
    from sqlalchemy import text

    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_counter (stratum VARCHAR PRIMARY KEY, "
                          "next_seq INTEGER NOT NULL)"))
        for s in strata:
            conn.execute(text("INSERT INTO bench_counter VALUES (:s, 1)"), {"s": s})
    lock = "SELECT next_seq FROM bench_counter WHERE stratum = :s" + ("" if sqlite else " FOR UPDATE")

    def one(i: int) -> None:
        with engine.begin() as conn:  # SQLite: the engine begins with BEGIN IMMEDIATE
            conn.execute(text(lock), {"s": strata[i % len(strata)]}).scalar_one()
            conn.execute(text("UPDATE bench_counter SET next_seq = next_seq + 1 "
                              "WHERE stratum = :s"), {"s": strata[i % len(strata)]})

    return run_clients(clients, list(range(n)), one)


def bench_allocation(name: str, url: str, n: int, clients: int, protocol_file: str) -> None:
    from services.core.db import make_engine, unit_of_work
    from services.core.migrations import run_migrations
    from services.randomization.app import SPEC
    from services.randomization.keys import ListKey
    from services.randomization.lists import generate, seal
    from services.randomization.service import Actor, AllocationRequest, Context, allocate

    engine = make_engine(url, pool_size=clients)
    run_migrations(SPEC.migrations, url, engine=engine)
    ctx = Context(key=ListKey(new_list_key(), source="bench"), protocol=load_protocol(protocol_file))
    statistician, manager = Actor("bench", "statistician"), Actor("bench", "study_manager")
    with unit_of_work(engine) as session:
        lst = generate(session, ctx, slots_per_stratum=n, actor=statistician)
    with unit_of_work(engine) as session:
        seal(session, ctx, list_id=lst.id, actor=statistician)
    clusters = [c.key for c in ctx.protocol.clusters]

    def one(i: int) -> None:
        request = AllocationRequest(record=f"B{i:06d}", cluster=clusters[i % len(clusters)],
                                    site=None, pilot=False, source="manual", actor=manager)
        with unit_of_work(engine) as session:
            allocate(session, ctx, request)

    ours = run_clients(clients, list(range(n)), one)
    base = bare_lock_loop(engine, clusters, n, clients)
    engine.dispose()
    rate, base_rate = n / ours, n / base
    print(f"allocate {name:<10} {clients:>2} clients {n:>6,} alloc {rate:>9,.0f} alloc/s "
          f"({ours:5.2f} s) | baseline lock+update loop: {base_rate:>9,.0f} /s | "
          f"baseline/ours = {base_rate / rate:5.2f}x")


def bench_databases(n: int, clients: int, postgres_admin: str, protocol_file: str) -> None:
    from services.core.logging import configure_logging

    configure_logging("randomization", level="warning", json=False)  # not a line per allocation
    with databases(postgres_admin) as found:
        for name, url in found:
            bench_allocation(name, url, n, clients, protocol_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=1_000_000, help="slots to generate")
    parser.add_argument("--seal-slots", type=int, default=1_000_000,
                        help="how many of them to seal and verify")
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "perpain-pilot.yaml"))
    parser.add_argument("--allocations", type=int, default=600,
                        help="allocations per database (0: skip the database benchmark)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent allocating threads")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "TAILOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
                        help="admin URL of a PostgreSQL server (skipped when unreachable)")
    args = parser.parse_args()

    design = design_from_protocol(load_protocol(args.protocol))
    print(f"randomization benchmark: {len(design.strata)} strata, block lengths "
          f"{list(design.block_lengths)}, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    slots = bench_generation(design, args.slots)
    subset = slots[: args.seal_slots]
    key, list_id = new_list_key(), "bench-list"
    rows, commitment = bench_sealing(subset, list_id, key)
    bench_closure(rows, commitment, list_id, key)

    # ------------------------------------------------------------------------------------
    # DATABASE ALLOCATION BENCHMARK: allocations/s with concurrent clients on SQLite and
    # PostgreSQL, beside a bare `SELECT … FOR UPDATE` + `UPDATE` loop on the same database.
    # ------------------------------------------------------------------------------------
    if args.allocations:
        bench_databases(args.allocations, args.clients, args.postgres_url, args.protocol)
    print(peak_rss_line())


if __name__ == "__main__":
    main()
