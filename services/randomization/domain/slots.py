"""Slots of a randomization list and their one canonical encoding.

The canonical encoding of a slot with its salt is the UTF-8 of a JSON array without
whitespace, in this order, with strings escaped as JSON does (`ensure_ascii`):

    ["tailor.slot/1", stratum, seq, block, block_length, module, arm, salt_hex]

e.g. `["tailor.slot/1","DYS",7,2,8,"PERT","personalized","9f…(32 hex digits)"]`.
It is the plaintext of a sealed slot (see sealing.py) and the data of the slot's
commitment leaf (see commitment.py), so anyone can recompute a leaf from an unsealed list.
"""

from __future__ import annotations

import gc
import json
import re
from binascii import hexlify
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple

ENCODING_TAG = "tailor.slot/1"
SALT_BYTES = 16


class Slot(NamedTuple):
    """One position of a stratum's list (a NamedTuple: a million of them must be cheap)."""

    stratum: str
    seq: int  # 1..n within the stratum, the order of allocation
    block: int  # 1..k within the stratum
    block_length: int  # the length the block was drawn with
    module: str
    arm: str


class OpenedSlot(NamedTuple):
    """A slot with the secret salt that hides it in the public commitment."""

    slot: Slot
    salt: bytes


def canonical_order(slots: Iterable[Slot]) -> list[Slot]:
    """By stratum key (code-point order, the byte order of UTF-8), then seq."""
    return sorted(slots, key=itemgetter(0, 1))  # (stratum, seq); itemgetter runs in C


@lru_cache(maxsize=4096)
def json_string(text: str) -> str:
    """`text` as a JSON string; strata, modules and arms are few, so each is quoted once."""
    return json.dumps(text)


def encode_slot(slot: Slot, salt: bytes) -> bytes:
    """The canonical encoding described in the module docstring."""
    return (f'["{ENCODING_TAG}",{json_string(slot.stratum)},{slot.seq:d},{slot.block:d},'
            f'{slot.block_length:d},{json_string(slot.module)},{json_string(slot.arm)},'
            f'"{salt.hex()}"]').encode()


# The many-slot forms below do per column what the one-slot forms do per slot: each step is
# one `map` over a C function, so a million slots cost no Python frame each (bench/
# randomization.py measures it). Their output is byte for byte that of the one-slot forms.
_FORMAT = b'["' + ENCODING_TAG.encode() + b'",%s,%d,%d,%d,%s,%s,"%s"]'


@lru_cache(maxsize=4096)
def _json_bytes(text: str) -> bytes:
    return json_string(text).encode()


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a million slots' tuples are built.

    They hold no cycles, yet each allocation burst triggers collections that walk every
    live tuple again: measured, that costs more than the AES-GCM and SHA-256 of the slots.
    Only the timing of cycle collection changes (it is process-wide; re-enabled after).
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _tuples(cls: type, columns: Iterable[tuple]) -> map:
    """`cls._make` per row without a Python frame per row (what `_make` itself calls)."""
    return map(tuple.__new__, repeat(cls), columns)


# The same encoding when every stratum, module and arm is a plain name (JSON quotes it by
# adding quotes, nothing else): formatted from the Slot tuple itself, so no column is split
# out of a million tuples first (that transpose cost as much as the formatting).
_PLAIN_FORMAT = '["' + ENCODING_TAG + '","%s",%d,%d,%d,"%s","%s","%s"]'


@lru_cache(maxsize=4096)
def _plain(text: str) -> bool:
    return json_string(text) == f'"{text}"'


def _all_plain(slots: Sequence[Slot]) -> bool:
    return all(map(_plain, {name for names in map(itemgetter(0, 4, 5), slots)
                            for name in names}))


def encode_slots(slots: Sequence[Slot], salts: Iterable[bytes]) -> list[bytes]:
    """`encode_slot` of many slots, each with its salt."""
    if not slots:
        return []
    if _all_plain(slots):
        return list(map(str.encode, map(_PLAIN_FORMAT.__mod__, map(
            tuple.__add__, slots, zip(map(bytes.hex, salts))))))
    strata, seqs, blocks, lengths, modules, arms = zip(*slots, strict=True)
    q = _json_bytes
    return list(map(_FORMAT.__mod__, zip(map(q, strata), seqs, blocks, lengths, map(q, modules),
                                         map(q, arms), map(hexlify, salts), strict=True)))


def decode_slots(data: Sequence[bytes]) -> list[OpenedSlot] | None:
    """`decode_slot` of many plaintexts at once, or None if any is not canonical.

    Parses them all with one `json.loads` and accepts only if re-encoding gives back each
    plaintext byte for byte (less its padding), with the types `decode_slot` demands: so
    it accepts nothing `decode_slot` refuses. On None, decode one by one for the reason.
    """
    if not data:
        return []
    stripped = list(map(bytes.rstrip, data, repeat(b" ")))
    joined = b",".join(stripped)
    if b"\x7f" in joined:  # DEL: json.dumps leaves it raw, the canonical pattern refuses it
        return None
    try:
        rows = json.loads(b"[" + joined + b"]")
        if len(rows) != len(stripped):
            return None
        tags, strata, seqs, blocks, lengths, modules, arms, hexes = zip(*rows, strict=True)
        # Numbers need no type check: re-encoding with %d refuses text and changes the
        # spelling of floats and booleans. Texts do: %s would spell the number 1 as `1`.
        if (set(tags) != {ENCODING_TAG}
                or any(type(t) is not str for t in {*strata, *modules, *arms})
                or min(map(min, (seqs, blocks, lengths))) < 0):
            return None
        salts = list(map(bytes.fromhex, hexes))
        slots = list(_tuples(Slot, zip(strata, seqs, blocks, lengths, modules, arms,
                                       strict=True)))
        if encode_slots(slots, salts) != stripped:
            return None
    except (ValueError, TypeError, OverflowError):  # not JSON, not arrays of eight, not hex,
        return None  # a number %d cannot spell (NaN, Infinity)
    return list(_tuples(OpenedSlot, zip(slots, salts, strict=True)))


# A JSON string as `json.dumps` writes it: printable ASCII, `"` and `\` escaped.
_STRING = r'"(?:[ !#-\[\]-~]|\\["\\/bfnrt]|\\u[0-9a-f]{4})*"'
_CANONICAL = re.compile(
    rf'\["{re.escape(ENCODING_TAG)}",({_STRING}),(0|[1-9][0-9]*),(0|[1-9][0-9]*),'
    rf'(0|[1-9][0-9]*),({_STRING}),({_STRING}),"((?:[0-9a-f]{{2}})*)"\] *')


def _unquote(token: str) -> str:
    return token[1:-1] if "\\" not in token else json.loads(token)


def decode_slot(data: bytes) -> OpenedSlot:
    """Inverse of `encode_slot`; trailing padding spaces allowed, nothing else (ValueError)."""
    try:
        match = _CANONICAL.fullmatch(data.decode())
    except UnicodeDecodeError:
        match = None
    if match is None:
        raise ValueError("not a canonical slot encoding")
    stratum, seq, block, length, module, arm, salt = match.groups()
    slot = Slot(_unquote(stratum), int(seq), int(block), int(length), _unquote(module),
                _unquote(arm))
    return OpenedSlot(slot, bytes.fromhex(salt))
