"""Sealing slots with AES-256-GCM, and opening them again.

Plaintext: the slot's canonical encoding with its salt (slots.py), padded with spaces to
one length for the whole batch (a multiple of 16 bytes), because ciphertext length equals
plaintext length and "personalized" is shorter than "non_personalized": unpadded, the
length alone would unblind. Associated data: the UTF-8 of the JSON array
`["tailor.sealed-slot/1", list_id, stratum, seq]` (no whitespace), so a ciphertext only
opens at its own place: copying or swapping rows in the database makes them unreadable.
Nonces: 96 random bits per slot. With random nonces one key must seal fewer than 2**32
slots, far beyond any trial.

The key (32 bytes) comes from the caller: the environment or a mounted secret, never the
database. `leaf` is the slot's public commitment leaf, stored beside the ciphertext so
inclusion proofs need no key.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .commitment import BatchCommitment, commit_leaves
from .errors import SealError, SecretError
from .merkle import leaf_hash, leaf_hashes
from .slots import (
    SALT_BYTES,
    OpenedSlot,
    Slot,
    bulk,
    canonical_order,
    decode_slot,
    decode_slots,
    encode_slots,
    json_string,
)

KEY_BYTES = 32
NONCE_BYTES = 12
_AAD_TAG = "tailor.sealed-slot/1"


class SealedSlot(NamedTuple):
    stratum: str
    seq: int
    nonce: bytes
    ciphertext: bytes  # includes the 16-byte GCM tag
    leaf: bytes  # public: SHA-256 leaf of the salted slot


class SealedBatch(NamedTuple):
    slots: list[SealedSlot]  # canonical order
    commitment: BatchCommitment


def new_list_key() -> bytes:
    """A fresh 256-bit list key (store it as a secret, never in the database)."""
    return AESGCM.generate_key(bit_length=256)


def _cipher(key: bytes) -> AESGCM:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise SecretError(f"the list key must be {KEY_BYTES} bytes (AES-256)", field="key")
    return AESGCM(key)


def associated_data(list_id: str, stratum: str, seq: int) -> bytes:
    return _aad_prefix(list_id, stratum) + b"%d]" % seq


@lru_cache(maxsize=4096)
def _aad_prefix(list_id: str, stratum: str) -> bytes:
    return f'["{_AAD_TAG}",{json_string(list_id)},{json_string(stratum)},'.encode()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _aads(list_id: str, strata: Iterable[str], seqs: Iterable[int]) -> map:
    return map(bytes.__add__, map(_aad_prefix, repeat(list_id), strata),
               map(b"%d]".__mod__, seqs))


def seal_batch(slots: Iterable[Slot], *, key: bytes, list_id: str, batch: int = 1) -> SealedBatch:
    """Salt, encrypt and commit slots: the rows to store and the commitment to publish.

    Column by column (slots.py says why): the per-slot work is AES-GCM and SHA-256 in C.
    """
    aes = _cipher(key)
    if not list_id:
        raise SealError("a list id is required", field="list_id")
    with bulk():
        return _seal(aes, slots, list_id, batch)


def _seal(aes: AESGCM, slots: Iterable[Slot], list_id: str, batch: int) -> SealedBatch:
    ordered = canonical_order(slots)
    n = len(ordered)
    salts = _chunks(secrets.token_bytes(SALT_BYTES * n), SALT_BYTES)
    nonces = _chunks(secrets.token_bytes(NONCE_BYTES * n), NONCE_BYTES)
    plains = encode_slots(ordered, salts)
    width = -(-max(map(len, plains), default=0) // 16) * 16
    strata, seqs = list(map(itemgetter(0), ordered)), list(map(itemgetter(1), ordered))
    ciphertexts = map(aes.encrypt, nonces, map(bytes.ljust, plains, repeat(width)),
                      _aads(list_id, strata, seqs))
    leaves = leaf_hashes(plains)
    sealed = list(map(tuple.__new__, repeat(SealedSlot),
                      zip(strata, seqs, nonces, ciphertexts, leaves, strict=True)))
    commitment = commit_leaves(ordered, leaves, list_id=list_id, batch=batch)
    return SealedBatch(sealed, commitment)


def _open(aes: AESGCM, sealed: SealedSlot, list_id: str) -> OpenedSlot:
    where = f"slot {sealed.stratum} #{sealed.seq}"
    try:
        plain = aes.decrypt(sealed.nonce, sealed.ciphertext,
                            associated_data(list_id, sealed.stratum, sealed.seq))
    except InvalidTag:
        raise SealError(f"{where} cannot be opened: wrong key, or the ciphertext was altered "
                        "or moved from another slot", stratum=sealed.stratum,
                        seq=sealed.seq) from None
    try:
        opened = decode_slot(plain)
    except ValueError as err:
        raise SealError(f"{where}: {err}", stratum=sealed.stratum, seq=sealed.seq) from None
    if (opened.slot.stratum, opened.slot.seq) != (sealed.stratum, sealed.seq):
        raise SealError(f"{where} holds another slot", stratum=sealed.stratum, seq=sealed.seq)
    if leaf_hash(plain.rstrip(b" ")) != sealed.leaf:
        raise SealError(f"{where}: the stored leaf does not match the sealed slot",
                        stratum=sealed.stratum, seq=sealed.seq, field="leaf")
    return opened


def unseal_slot(sealed: SealedSlot, *, key: bytes, list_id: str) -> OpenedSlot:
    """Open one slot (allocation, emergency unblinding)."""
    return _open(_cipher(key), sealed, list_id)


_CHUNK = 4096  # slots opened together: bounds the memory of the joined plaintexts
_columns = attrgetter("stratum", "seq", "nonce", "ciphertext", "leaf")


def _open_many(aes: AESGCM, sealed: Sequence[SealedSlot], list_id: str) -> list[OpenedSlot] | None:
    """The checks of `_open` over many slots at once; None if any fails (then `_open` them
    one by one to name the slot and the reason)."""
    strata, seqs, nonces, ciphertexts, leaves = zip(*map(_columns, sealed), strict=True)
    try:
        plains = list(map(aes.decrypt, nonces, ciphertexts, _aads(list_id, strata, seqs)))
    except InvalidTag:
        return None
    opened = decode_slots(plains)
    if (opened is None
            or list(map(itemgetter(0, 1), map(itemgetter(0), opened))) != list(zip(strata, seqs, strict=True))
            or leaf_hashes(map(bytes.rstrip, plains, repeat(b" "))) != list(leaves)):
        return None
    return opened


def unseal_slots(sealed: Sequence[SealedSlot], *, key: bytes, list_id: str) -> list[OpenedSlot]:
    """Open many slots (closure); stops at the first slot that does not open."""
    aes = _cipher(key)
    opened: list[OpenedSlot] = []
    with bulk():
        for start in range(0, len(sealed), _CHUNK):
            chunk = sealed[start:start + _CHUNK]
            fast = _open_many(aes, chunk, list_id)
            opened.extend(fast if fast is not None else (_open(aes, s, list_id) for s in chunk))
    return opened
