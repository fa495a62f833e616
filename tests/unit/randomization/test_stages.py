"""Later stages (SMART): the responder rule at its boundaries, the stage strata of the list
(own options and block lengths per outcome and first-stage arm), their balance, and the
designs a stage is refused with."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.protocol import parse_protocol
from services.core.protocol.randomization import ResponseRule
from services.randomization.domain import DesignError, design_from_protocol, generate_list
from services.randomization.domain.generate import extend_stratum
from services.randomization.domain.stages import Unscorable, classify

from .conftest import seed_of

ROOT = Path(__file__).resolve().parents[3]
RULE = ResponseRule(field="pegf_pain", baseline_field="peg_pain", min_reduction=0.3)


@pytest.fixture(scope="module")
def pcst() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "protocols" / "pcst-smart.yaml").read_text())


@pytest.mark.parametrize(("baseline", "value", "outcome"), [
    ("10", "7", "responders"),        # exactly 30%: a response
    ("10", "7.0", "responders"),
    ("7", "4.9", "responders"),       # 30% of 7 is 2.1: float arithmetic would miss it
    ("3", "2.1", "responders"),
    ("10", "7.01", "non_responders"),  # just short of 30%
    ("10", "8", "non_responders"),
    ("4", "4", "non_responders"),     # no change
    ("4", "6", "non_responders"),     # worse
    ("10", "0", "responders"),        # pain gone
    (" 9 ", "6", "responders"),       # REDCap's stray spaces
])
def test_the_rule_classes_a_fall_of_at_least_the_fraction_as_a_response(
        baseline: str, value: str, outcome: str) -> None:
    assert classify(RULE, value, baseline) == outcome


@pytest.mark.parametrize(("baseline", "value", "field", "says"), [
    ("0", "0", "peg_pain", "baseline is 0"),
    ("0", "3", "peg_pain", "baseline is 0"),
    (None, "3", "peg_pain", "no value"),
    ("", "3", "peg_pain", "no value"),
    ("8", None, "pegf_pain", "no value"),
    ("8", "  ", "pegf_pain", "no value"),
    ("8", "seven", "pegf_pain", "not a number"),
    ("8", "NaN", "pegf_pain", "not a number"),
    ("8", "Infinity", "pegf_pain", "not a number"),
    ("8", "-1", "pegf_pain", "negative"),
    ("x", "3", "peg_pain", "not a number"),
])
def test_an_unscorable_value_names_its_field_and_never_its_value(
        baseline: str | None, value: str | None, field: str, says: str) -> None:
    with pytest.raises(Unscorable) as err:
        classify(RULE, value, baseline)
    assert err.value.field == field
    assert says in str(err.value)
    assert "seven" not in str(err.value)


def test_each_outcome_and_first_stage_arm_has_its_own_stratum(pcst: dict[str, Any]) -> None:
    design = design_from_protocol(parse_protocol(pcst))
    assert [s.key for s in design.strata] == ["all"]  # the first stage's, unchanged
    assert [s.key for s in design.stage_strata] == [
        "s2:non_responders:pcst_brief", "s2:non_responders:pcst_full",
        "s2:responders:pcst_brief", "s2:responders:pcst_full"]
    assert design.stratum("s2:responders:pcst_full").modules == ("maintenance", "no_dose")
    assert design.stratum("s2:non_responders:pcst_brief").modules == ("increased", "maintenance")
    assert design.block_lengths_of("s2:responders:pcst_full") == (2, 4)
    assert design.block_lengths_of("all") == (2, 4, 6)


def test_stage_strata_are_permuted_blocks_of_their_own_lengths_and_options(
        pcst: dict[str, Any]) -> None:
    design = design_from_protocol(parse_protocol(pcst))
    slots = generate_list(design, seed_of("smart"), 120)
    for stratum in design.stage_strata:
        mine = [s for s in slots if s.stratum == stratum.key]
        assert len(mine) >= 120
        blocks: dict[int, list[str]] = {}
        for s in mine:
            assert s.block_length in (2, 4)
            assert s.module == s.arm and s.module in stratum.modules
            blocks.setdefault(s.block, []).append(s.module)
        for block, options in blocks.items():  # every whole block holds the 1:1 ratio
            counts = Counter(options)
            assert set(counts) == set(stratum.modules), (stratum.key, block)
            assert len(set(counts.values())) == 1, (stratum.key, block)
        running: Counter[str] = Counter()
        for s in mine:  # at any time within half the longest block of the ratio
            running[s.module] += 1
            assert abs(running[stratum.modules[0]] - running[stratum.modules[1]]) <= 2


def test_a_stage_stratum_is_extended_with_its_stage_block_lengths(pcst: dict[str, Any]) -> None:
    design = design_from_protocol(parse_protocol(pcst))
    seed = seed_of("smart-extend")
    first = generate_list(design, seed, 10)
    last = max((s for s in first if s.stratum == "s2:responders:pcst_brief"),
               key=lambda s: s.seq)
    more = extend_stratum(design, "s2:responders:pcst_brief", seed, after=last,
                          min_new_slots=20)
    assert more[0].seq == last.seq + 1 and all(s.block_length in (2, 4) for s in more)
    longer = [s for s in generate_list(design, seed, last.seq + 20)
              if s.stratum == "s2:responders:pcst_brief"]
    assert more == longer[last.seq:last.seq + len(more)]


def test_a_stage_block_must_hold_its_options_ratio(pcst: dict[str, Any]) -> None:
    data = copy.deepcopy(pcst)
    data["randomization"]["stages"][0]["responders"][0]["ratio"] = 2
    with pytest.raises(Exception, match=r"block_lengths \[2, 4\] are not positive multiples of 3"):
        parse_protocol(data)


def test_stages_follow_a_first_stage_of_permuted_blocks_only(pcst: dict[str, Any]) -> None:
    data = copy.deepcopy(pcst)
    data["randomization"].update(method="minimization", block_lengths=[],
                                 minimization={"p_preferred": 0.8}, stratify_by=["site"],
                                 sites=["duke"])
    with pytest.raises(DesignError) as err:
        design_from_protocol(parse_protocol(data))
    assert err.value.field == "randomization.stages"
