"""The design vocabulary of the protocol file: arms with ratios, factors from REDCap fields,
methods, personalization as one optional rule, stages; every mistake names its key."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.protocol import Factor, ProtocolError, TrialProtocol, parse_protocol
from services.randomization.domain import RandomizationError, design_from_protocol, generate_list

from .conftest import seed_of

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def perpain() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "protocols" / "perpain-pilot.yaml").read_text())


def plain(perpain: dict[str, Any], **randomization: Any) -> dict[str, Any]:
    """PerPAIN's file turned into a two-arm trial without a prediction step or diary."""
    d = copy.deepcopy(perpain)
    for key in ("clusters", "allocation", "diary"):
        d.pop(key)
    d["modules"] = [{"key": "P4P", "label": "Partners4Pain", "weeks": 12},
                    {"key": "KTW", "label": "Keys to Wellbeing", "weeks": 12}]
    d["arms"] = [{"key": "p4p", "label": "Partners4Pain", "ratio": 1, "modules": ["P4P"]},
                 {"key": "ktw", "label": "Keys to Wellbeing", "ratio": 1, "modules": ["KTW"]}]
    r = d["randomization"]
    for key in ("module_weights", "arm_of"):
        r.pop(key)
    r.update({"stratify_by": ["site"], "sites": ["rush", "uic"], "block_lengths": [2, 4, 6],
              "initial_slots_per_stratum": 200})
    r.update(randomization)
    return d


def error(data: dict[str, Any]) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(data, "trial.yaml")
    return str(info.value)


def test_perpain_is_one_instance_of_the_vocabulary(perpain: dict[str, Any]) -> None:
    protocol = parse_protocol(perpain)
    r = protocol.randomization
    assert r.method == "permuted_blocks" and r.personalized
    assert [a.ratio for a in protocol.arms] == [1, 1]
    design = design_from_protocol(protocol)
    assert design.personalized and design.factors == (("cluster", ("DYS", "ID", "AC")),)
    assert design.stratum_keys == ("AC", "DYS", "ID")  # unchanged keys: old lists still read
    assert design.stratum_for_levels({"cluster": "DYS"}).key == "DYS"


def test_a_plain_two_arm_design_runs_without_prediction_or_diary(perpain) -> None:
    protocol = parse_protocol(plain(perpain))
    assert protocol.allocation is None and protocol.diary is None
    with pytest.raises(ProtocolError, match="allocation: this protocol has no prediction step"):
        _ = protocol.prediction
    design = design_from_protocol(protocol)
    assert design.stratum_keys == ("rush", "uic") and design.arms == ("p4p", "ktw")
    assert design.modules == ("P4P", "KTW")
    slots = generate_list(design, seed_of("p4p"), 200)
    for stratum in design.stratum_keys:
        arms = Counter(s.arm for s in slots if s.stratum == stratum)
        assert arms["p4p"] == arms["ktw"]  # whole 1:1 blocks
    assert {(s.module, s.arm) for s in slots} == {("P4P", "p4p"), ("KTW", "ktw")}


def test_ratios_and_field_factors_make_the_strata(perpain) -> None:
    data = plain(perpain, stratify_by=["site", "peg"], block_lengths=[3, 6], factors=[
        {"key": "peg", "field": "peg_interference", "cut_points": [4, 7],
         "levels": ["low", "mid", "high"]}])
    data["arms"][0]["ratio"] = 2
    design = design_from_protocol(parse_protocol(data))
    assert len(design.strata) == 6 and "uic|high" in design.stratum_keys
    assert design.stratum_for_levels({"site": "uic", "peg": "mid"}).key == "uic|mid"
    slots = [s for s in generate_list(design, seed_of("2:1"), 60) if s.stratum == "rush|low"]
    counts = Counter(s.arm for s in slots)
    assert counts["p4p"] == 2 * counts["ktw"]
    with pytest.raises(RandomizationError) as err:
        design.stratum_for_levels({"site": "uic", "peg": "severe"})
    assert err.value.field == "peg"


def test_a_continuous_factor_is_cut_at_its_declared_points() -> None:
    f = Factor(key="peg", field="peg_interference", cut_points=[4, 7],
               levels=["low", "mid", "high"])
    assert [f.level_of(v) for v in ("0", "3.9", "4", "6.99", "7", "10")] == [
        "low", "low", "mid", "mid", "high", "high"]
    coded = Factor(key="sex", field="dem_sex", codes={"1": "female", "2": "male"})
    assert coded.level_of("2") == "male" and coded.level_keys == ("female", "male")
    for bad in ("", "x", "nan"):
        with pytest.raises(ValueError, match="peg_interference"):
            f.level_of(bad)
    with pytest.raises(ValueError, match="dem_sex"):
        coded.level_of("3")


@pytest.mark.parametrize(("change", "named"), [
    (lambda d: d["randomization"].update(method="blocks"), "randomization.method"),
    (lambda d: d["randomization"].update(stratify_by=["pain"]),
     "randomization.stratify_by[0]: 'pain' is not a declared factor"),
    (lambda d: d["randomization"].update(stratify_by=["cluster"]),
     "randomization.stratify_by[0]: 'cluster' is not a declared factor"),
    (lambda d: d["randomization"].update(method="minimization"),
     "randomization.minimization: method 'minimization' needs this section"),
    (lambda d: d["randomization"].update(minimization={"p_preferred": 0.8}),
     "randomization.minimization: only for method 'minimization'"),
    (lambda d: d["randomization"].update(method="minimization",
                                         minimization={"p_preferred": 0.4}),
     "randomization.minimization.p_preferred"),
    (lambda d: d["randomization"].update(method="group"), "randomization.group: method 'group'"),
    (lambda d: d["randomization"].update(block_lengths=[3]),
     "randomization.block_lengths[0]: 3 is not a multiple of 2, the sum of the arms' ratios"),
    (lambda d: d["randomization"].update(factors=[{"key": "peg", "field": "peg_i"}]),
     "randomization.factors[0]"),
    (lambda d: d["randomization"].update(factors=[
        {"key": "peg", "field": "peg_i", "cut_points": [4, 3], "levels": ["a", "b", "c"]}]),
     "cut_points must be one or more strictly ascending"),
    (lambda d: d["randomization"].update(factors=[
        {"key": "peg", "field": "peg_i", "cut_points": [4], "levels": ["a"]}]),
     "levels: 2 names are needed"),
    (lambda d: d["randomization"].update(factors=[{"key": "peg", "field": "peg_i", "codes": {
        "1": "a|b"}}]), "no '|'"),
    (lambda d: d["arms"][0].update(ratio=0), "arms[0].ratio"),
    (lambda d: d["arms"][0].update(modules=["CBT"]),
     "arms[0].modules[0]: 'CBT' is not a module"),
    (lambda d: d["randomization"].update(module_weights={"matching": 2, "non_matching": 1}),
     "module_weights and arm_of: personalization needs both"),
    (lambda d: d.update(clusters=[{"key": "DYS", "label": "d", "matching_module": "P4P"}]),
     "clusters: only a personalized design"),
    (lambda d: d["randomization"].update(stages=[{
        "key": "second", "timepoint": "week_12", "number_field": "s2_number",
        "option_field": "s2_option", "block_lengths": [2],
        "rule": {"field": "peg", "baseline_field": "peg_t0", "min_reduction": 0.3},
        "responders": [{"key": "maint", "label": "m"}, {"key": "none", "label": "n"}],
        "non_responders": [{"key": "more", "label": "i"}, {"key": "maint", "label": "m"}]}]),
     "randomization.stages[0].timepoint: 'week_12' is not a timepoint"),
])
def test_each_mistake_names_its_key(perpain, change, named: str) -> None:
    data = plain(perpain)
    change(data)
    assert named in error(data)


def test_personalization_keeps_its_own_checks(perpain) -> None:
    data = copy.deepcopy(perpain)
    data.pop("allocation")
    assert "allocation: a personalized design needs its prediction step" in error(data)
    data = copy.deepcopy(perpain)
    data["arms"][0]["ratio"] = 2
    assert "take" in error(data) and "module_weights" in error(data)
    data = copy.deepcopy(perpain)
    data["randomization"]["arm_of"]["matching"] = "matched"
    assert "randomization.arm_of.matching: 'matched' is not an arm" in error(data)


def test_a_minimization_design_validates(perpain) -> None:
    data = plain(perpain, method="minimization", block_lengths=[],
                 minimization={"p_preferred": 0.8, "site_weight": 1},
                 stratify_by=["site", "peg"], factors=[
                     {"key": "peg", "field": "peg_interference", "cut_points": [5],
                      "levels": ["low", "high"], "weight": 2}])
    protocol: TrialProtocol = parse_protocol(data)
    assert protocol.randomization.minimization is not None
    assert protocol.randomization.minimization.p_preferred == 0.8


def test_stages_make_their_own_strata_in_the_list(perpain) -> None:
    data = plain(perpain, stages=[{
        "key": "second", "timepoint": "week_8", "number_field": "s2_number",
        "option_field": "s2_option", "block_lengths": [2],
        "rule": {"field": "peg", "baseline_field": "peg_t0", "min_reduction": 0.3},
        "responders": [{"key": "maint", "label": "m"}, {"key": "none", "label": "n"}],
        "non_responders": [{"key": "more", "label": "i"}, {"key": "maint", "label": "m"}]}])
    design = design_from_protocol(parse_protocol(data))
    assert [s.key for s in design.stage_strata] == [
        "second:non_responders:ktw", "second:non_responders:p4p",
        "second:responders:ktw", "second:responders:p4p"]
