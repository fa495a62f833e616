"""Randomization benchmark: list generation, sealing, closure verification; allocation (later).

Run: `.venv/bin/python bench/randomization.py [--slots 1000000] [--seal-slots 1000000]`

Every figure is printed beside a baseline measured in the same run on the same machine,
as a ratio, because absolute speeds depend on the machine and its load:

- generation: ours (HMAC-SHA256 stream, Fisher–Yates per block, Slot tuples) against
  the naive permuted-block generator a script would use: `random.Random(seed)` (Mersenne
  Twister, not a CSPRNG) choosing lengths and `shuffle`-ing the same blocks.
- sealing: `seal_batch` (salt, canonical encoding, padding, AES-256-GCM, leaf hash, Merkle
  root) against a bare loop of AESGCM.encrypt over same-size plaintexts with fresh nonces.
- closure: `unseal_slots` + `verify_list` against a bare AESGCM.decrypt loop.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def report(what: str, n: int, ours: float, baseline: float, baseline_name: str,
           n_baseline: int | None = None) -> None:
    """Rates in slots/s; the ratio says how many times slower than the baseline we are."""
    rate, base_rate = n / ours, (n_baseline or n) / baseline
    print(f"{what:<14} {n:>9,} slots {rate:>11,.0f} slots/s ({ours:5.2f} s) | baseline "
          f"{baseline_name}: {base_rate:>11,.0f} slots/s | baseline/ours = "
          f"{base_rate / rate:5.2f}x")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=1_000_000, help="slots to generate")
    parser.add_argument("--seal-slots", type=int, default=1_000_000,
                        help="how many of them to seal and verify")
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "perpain-pilot.yaml"))
    args = parser.parse_args()

    design = design_from_protocol(load_protocol(args.protocol))
    print(f"randomization benchmark: {len(design.strata)} strata, block lengths "
          f"{list(design.block_lengths)}, Python {sys.version.split()[0]}")
    slots = bench_generation(design, args.slots)
    subset = slots[: args.seal_slots]
    key, list_id = new_list_key(), "bench-list"
    rows, commitment = bench_sealing(subset, list_id, key)
    bench_closure(rows, commitment, list_id, key)

    # ------------------------------------------------------------------------------------
    # DATABASE ALLOCATION BENCHMARK (the lead adds this once the service is wired):
    # allocations/s with concurrent clients on SQLite and PostgreSQL, beside a bare
    # `SELECT … FOR UPDATE` + `UPDATE` loop on the same database as the baseline.
    # ------------------------------------------------------------------------------------


if __name__ == "__main__":
    main()
