"""Generated lists: exact permuted blocks, configured lengths, seed reproducibility."""

from __future__ import annotations

import hmac
import struct
from collections import Counter
from dataclasses import replace
from itertools import groupby

import pytest
from scipy.stats import chisquare

from services.randomization.domain import (
    DesignError,
    ExtensionError,
    ListDesign,
    SecretError,
    Slot,
    extend_stratum,
    generate_list,
    generate_stratum,
)
from services.randomization.domain.stream import BlockStream

from .conftest import seed_of


def blocks(slots: list[Slot]) -> list[list[Slot]]:
    return [list(g) for _, g in groupby(slots, key=lambda s: (s.stratum, s.block))]


def test_every_block_holds_the_exact_ratio(design: ListDesign) -> None:
    for i in range(5):
        slots = generate_list(design, seed_of(i), 200)
        for block in blocks(slots):
            stratum = design.stratum(block[0].stratum)
            assert len(block) == block[0].block_length
            assert Counter(s.module for s in block) == stratum.expected_counts(len(block))
            assert all(s.arm == stratum.arm_of(s.module) for s in block)


def test_each_stratum_is_numbered_from_one_without_gaps(design: ListDesign, seed: bytes) -> None:
    slots = generate_list(design, seed, 60)
    for key in design.stratum_keys:
        mine = [s for s in slots if s.stratum == key]
        assert [s.seq for s in mine] == list(range(1, len(mine) + 1))
        assert [b[0].block for b in blocks(mine)] == list(range(1, len(blocks(mine)) + 1))


@pytest.mark.parametrize("n", [1, 4, 5, 37, 105])
def test_a_stratum_reaches_the_asked_size_by_whole_blocks(design: ListDesign, seed: bytes,
                                                          n: int) -> None:
    slots = generate_stratum(design.stratum("DYS"), design.block_lengths, seed, n)
    assert len(slots) >= n
    assert len(slots) - slots[-1].block_length < n  # the last block was needed
    assert len(blocks(slots)[-1]) == slots[-1].block_length


def test_list_size_defaults_to_the_protocol(design: ListDesign, seed: bytes) -> None:
    sizes = Counter(s.stratum for s in generate_list(design, seed))
    assert set(sizes) == set(design.stratum_keys)
    assert min(sizes.values()) >= 105


def test_list_size_is_required_when_the_protocol_sets_none(design: ListDesign,
                                                           seed: bytes) -> None:
    bare = replace(design, initial_slots_per_stratum=None)
    with pytest.raises(DesignError) as err:
        generate_list(bare, seed)
    assert err.value.field == "min_slots_per_stratum"
    with pytest.raises(ExtensionError):
        generate_list(design, seed, 0)


def test_block_lengths_follow_the_configured_distribution(design: ListDesign) -> None:
    slots = generate_stratum(design.stratum("AC"), design.block_lengths, seed_of("len"), 24_000)
    counts = Counter(b[0].block_length for b in blocks(slots))
    assert set(counts) == set(design.block_lengths)
    observed = [counts[n] for n in design.block_lengths]
    assert chisquare(observed).pvalue > 1e-4  # uniform over the allowed lengths


def position_pvalues(lists: list[list[Slot]], design: ListDesign, positions: int) -> list[float]:
    """Chi-square p-value per position: module frequencies across lists against the ratio."""
    stratum = design.stratum(lists[0][0].stratum)
    share = {m: w / stratum.unit for m, w in stratum.weights}
    pvalues = []
    for p in range(positions):
        counts = Counter(slots[p].module for slots in lists)
        observed = [counts[m] for m in share]
        expected = [share[m] * len(lists) for m in share]
        pvalues.append(chisquare(observed, expected).pvalue)
    return pvalues


POSITIONS = 24
SEEDS = 3000


def test_each_position_gets_modules_in_the_ratio_across_seeds(design: ListDesign) -> None:
    stratum = design.stratum("DYS")
    lists = [generate_stratum(stratum, design.block_lengths, seed_of(i), POSITIONS)
             for i in range(SEEDS)]
    # Bonferroni over the positions: a fair generator fails this about once in 1000 seeds.
    assert min(position_pvalues(lists, design, POSITIONS)) > 0.001 / POSITIONS


def test_the_position_test_catches_unshuffled_blocks(design: ListDesign) -> None:
    # The same check on lists whose blocks keep the fixed pattern order must fail,
    # otherwise the test above proves nothing.
    stratum = design.stratum("DYS")
    lists = []
    for i in range(SEEDS):
        slots = generate_stratum(stratum, design.block_lengths, seed_of(i), POSITIONS)
        unshuffled = []
        for block in blocks(slots):
            pattern = stratum.block_pattern(len(block))
            unshuffled += [s._replace(module=m) for s, m in zip(block, pattern, strict=True)]
        lists.append(unshuffled)
    assert min(position_pvalues(lists, design, POSITIONS)) < 1e-6


def test_the_same_seed_gives_the_same_list(design: ListDesign) -> None:
    assert generate_list(design, seed_of(7), 50) == generate_list(design, seed_of(7), 50)


def test_different_seeds_give_different_lists(design: ListDesign) -> None:
    lists = {tuple(s.module for s in generate_list(design, seed_of(i), 50)) for i in range(20)}
    assert len(lists) == 20


def test_strata_are_generated_independently(design: ListDesign, seed: bytes) -> None:
    slots = generate_list(design, seed, 48)
    by = {k: [s.block_length for s in slots if s.stratum == k] for k in design.stratum_keys}
    assert len({tuple(v) for v in by.values()}) == len(by)


def test_a_longer_list_from_the_same_seed_starts_with_the_shorter(design: ListDesign,
                                                                   seed: bytes) -> None:
    short = generate_list(design, seed, 30)
    long = generate_list(design, seed, 300)
    for key in design.stratum_keys:
        mine = [s for s in short if s.stratum == key]
        assert [s for s in long if s.stratum == key][: len(mine)] == mine


def test_extending_with_the_seed_continues_the_same_list(design: ListDesign, seed: bytes) -> None:
    first = generate_stratum(design.stratum("ID"), design.block_lengths, seed, 40)
    more = extend_stratum(design, "ID", seed, after=first[-1], min_new_slots=40)
    longer = generate_stratum(design.stratum("ID"), design.block_lengths, seed, len(first) + 40)
    assert first + more == longer


def test_extending_with_a_fresh_seed_appends_new_exact_blocks(design: ListDesign,
                                                              seed: bytes) -> None:
    first = generate_stratum(design.stratum("ID"), design.block_lengths, seed, 40)
    more = extend_stratum(design, "ID", seed_of("fresh"), after=first[-1], min_new_slots=40)
    assert more[0].seq == first[-1].seq + 1
    assert more[0].block == first[-1].block + 1
    assert [s.seq for s in more] == list(range(len(first) + 1, len(first) + len(more) + 1))
    continued = extend_stratum(design, "ID", seed, after=first[-1], min_new_slots=40)
    assert more != continued
    for block in blocks(more):
        assert Counter(s.module for s in block) == \
            design.stratum("ID").expected_counts(len(block))


def test_extending_an_empty_stratum_starts_at_one(design: ListDesign, seed: bytes) -> None:
    assert extend_stratum(design, "AC", seed, after=None, min_new_slots=4)[0].seq == 1


def test_extension_refuses_a_slot_of_another_stratum(design: ListDesign, seed: bytes) -> None:
    first = generate_stratum(design.stratum("ID"), design.block_lengths, seed, 4)
    with pytest.raises(ExtensionError) as err:
        extend_stratum(design, "DYS", seed, after=first[-1], min_new_slots=4)
    assert err.value.field == "after"
    with pytest.raises(ExtensionError) as none:
        extend_stratum(design, "ID", seed, after=first[-1], min_new_slots=0)
    assert none.value.field == "min_slots"


@pytest.mark.parametrize("bad", [b"", b"short", bytes(31), bytes(33), "0" * 32])
def test_seeds_must_be_32_bytes(design: ListDesign, bad: bytes) -> None:
    with pytest.raises(SecretError) as err:
        generate_list(design, bad, 4)
    assert err.value.field == "seed"


def test_draws_are_uniform_and_in_range() -> None:
    stream = BlockStream(seed_of("draws"), 1)
    draws = [stream.below(12) for _ in range(24_000)]
    assert chisquare([draws.count(v) for v in range(12)]).pvalue > 1e-4
    # n just above 2**31 rejects about half the words; results stay below n.
    big = 2**31 + 1
    assert all(0 <= stream.below(big) < big for _ in range(200))


def reference_stratum(seed: bytes, stratum: str, pattern: dict[int, list[str]],
                      lengths: list[int], n: int) -> list[tuple[int, int, str]]:
    """The generator written again from the stream.py docstring alone."""
    secret = hmac.new(seed, b"tailor.randomization/1/stratum/" + stratum.encode(),
                      "sha256").digest()
    out: list[tuple[int, int, str]] = []
    block = 0
    while len(out) < n:
        block += 1
        words: list[int] = []
        for counter in range(4):
            msg = block.to_bytes(8, "big") + counter.to_bytes(4, "big")
            words += struct.unpack(">8I", hmac.new(secret, msg, "sha256").digest())
        it = iter(words)

        def below(k: int, it=it) -> int:
            while True:
                w = next(it)
                if w < 2**32 - 2**32 % k:
                    return w % k

        length = lengths[below(len(lengths))]
        mods = list(pattern[length])
        for i in range(length - 1, 0, -1):
            j = below(i + 1)
            mods[i], mods[j] = mods[j], mods[i]
        out += [(block, length, m) for m in mods]
    return out


def test_the_documented_algorithm_reproduces_the_list(design: ListDesign, seed: bytes) -> None:
    stratum = design.stratum("DYS")
    pattern = {n: stratum.block_pattern(n) for n in design.block_lengths}
    expected = reference_stratum(seed, "DYS", pattern, list(design.block_lengths), 100)
    slots = generate_stratum(stratum, design.block_lengths, seed, 100)
    assert [(s.block, s.block_length, s.module) for s in slots] == expected
