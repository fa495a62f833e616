"""Deterministic, unpredictable uniform draws keyed by a 256-bit seed.

Why HMAC-SHA256 in counter mode rather than `random.Random(seed)`: the Mersenne Twister is
not a cryptographic generator; its state can be rebuilt from a few hundred outputs, so
whoever learns the earlier allocations could predict the later ones and allocation
concealment would rest on nobody trying. HMAC-SHA256 keyed by a secret 256-bit seed is a
pseudorandom function: without the seed its output is indistinguishable from random, and
one block's draws say nothing about another's. It is in the standard library, has a
stable definition that a trials unit can re-implement to reproduce a list, and is fast
enough (a million slots in about a second).

Layout: stratum secret = HMAC-SHA256(seed, "tailor.randomization/1/stratum/" + stratum key);
the words of block b are the big-endian uint32s of HMAC-SHA256(stratum secret,
b as 8 bytes ‖ counter as 4 bytes) for counter = 0, 1, … Each block has its own stream,
so block b is the same however many blocks are generated before or after it: a longer
list from the same seed starts with the shorter one.
"""

from __future__ import annotations

import hmac
import secrets
import struct

from .errors import SecretError

SEED_BYTES = 32
_DOMAIN = b"tailor.randomization/1/stratum/"
_WORDS = struct.Struct(">8I")
_SPAN = 1 << 32


def new_seed() -> bytes:
    """A fresh 256-bit seed from the operating system's CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise SecretError(f"the seed must be {SEED_BYTES} random bytes", field="seed")


def stratum_secret(seed: bytes, stratum: str) -> bytes:
    check_seed(seed)
    return hmac.digest(seed, _DOMAIN + stratum.encode(), "sha256")


class BlockStream:
    """The uniform draws of one block of one stratum."""

    __slots__ = ("_counter", "_prefix", "_secret", "_words")

    def __init__(self, secret: bytes, block: int) -> None:
        self._secret = secret
        self._prefix = block.to_bytes(8, "big")
        self._counter = 0
        self._words: list[int] = []

    def _refill(self) -> None:
        digest = hmac.digest(self._secret, self._prefix + self._counter.to_bytes(4, "big"),
                             "sha256")
        self._counter += 1
        self._words = list(reversed(_WORDS.unpack(digest)))  # pop() then yields them in order

    def below(self, n: int) -> int:
        """Uniform on 0..n-1; rejection sampling keeps it exactly uniform (no modulo bias)."""
        limit = _SPAN - _SPAN % n
        while True:
            if not self._words:
                self._refill()
            word = self._words.pop()
            if word < limit:
                return word % n
