"""Slots of a randomization list and their one canonical encoding.

The canonical encoding of a slot with its salt is the UTF-8 of a JSON array without
whitespace, in this order, with strings escaped as JSON does (`ensure_ascii`):

    ["tailor.slot/1", stratum, seq, block, block_length, module, arm, salt_hex]

e.g. `["tailor.slot/1","DYS",7,2,8,"PERT","personalized","9f…(32 hex digits)"]`.
It is the plaintext of a sealed slot (see sealing.py) and the data of the slot's
commitment leaf (see commitment.py), so anyone can recompute a leaf from an unsealed list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
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
    return sorted(slots, key=lambda s: (s.stratum, s.seq))


@lru_cache(maxsize=4096)
def json_string(text: str) -> str:
    """`text` as a JSON string; strata, modules and arms are few, so each is quoted once."""
    return json.dumps(text)


def encode_slot(slot: Slot, salt: bytes) -> bytes:
    """The canonical encoding described in the module docstring."""
    return (f'["{ENCODING_TAG}",{json_string(slot.stratum)},{slot.seq:d},{slot.block:d},'
            f'{slot.block_length:d},{json_string(slot.module)},{json_string(slot.arm)},'
            f'"{salt.hex()}"]').encode()


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
