"""Protocols of other designs for tests, derived from PerPAIN's file: the same trial
facts (timepoints, safety, REDCap) with another randomization design and no prediction
step, so a test varies only the design."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from services.core.protocol import TrialProtocol, parse_protocol

ROOT = Path(__file__).resolve().parents[2]

PEG = {"key": "peg", "field": "peg_interference", "cut_points": [5], "levels": ["low", "high"],
       "weight": 1}


def plain_trial(**randomization: Any) -> dict[str, Any]:
    """Two arms (1:1), stratified by two sites, no clusters, no allocation step, no diary."""
    d = yaml.safe_load((ROOT / "protocols" / "perpain-pilot.yaml").read_text())
    d = copy.deepcopy(d)
    for key in ("clusters", "allocation", "diary"):
        d.pop(key)
    d["modules"] = [{"key": "P4P", "label": "Partners4Pain", "weeks": 12},
                    {"key": "KTW", "label": "Keys to Wellbeing", "weeks": 12}]
    d["arms"] = [{"key": "p4p", "label": "Partners4Pain", "modules": ["P4P"]},
                 {"key": "ktw", "label": "Keys to Wellbeing", "modules": ["KTW"]}]
    r = d["randomization"]
    for key in ("module_weights", "arm_of"):
        r.pop(key)
    r.update({"stratify_by": ["site"], "sites": ["rush", "uic"], "block_lengths": [2, 4, 6],
              "initial_slots_per_stratum": 200})
    r.update(randomization)
    return d


def minimization_trial(p_preferred: float = 0.8) -> TrialProtocol:
    """Minimization by site and baseline pain interference (cut at 5)."""
    return parse_protocol(plain_trial(
        method="minimization", block_lengths=[], stratify_by=["site", "peg"], factors=[PEG],
        initial_slots_per_stratum=None, minimization={"p_preferred": p_preferred}))


def group_trial_data(min_group_size: int = 2, max_group_size: int | None = 8,
                     block_lengths: tuple[int, ...] = (2, 4)) -> dict[str, Any]:
    """Group randomization by site: therapy groups (baseline field `grp_id`) in permuted
    blocks of 2 or 4 groups per site."""
    return plain_trial(
        method="group", block_lengths=list(block_lengths), initial_slots_per_stratum=40,
        group={"group_field": "grp_id", "min_group_size": min_group_size,
               "max_group_size": max_group_size})


def group_trial(min_group_size: int = 2, max_group_size: int | None = 8,
                block_lengths: tuple[int, ...] = (2, 4)) -> TrialProtocol:
    return parse_protocol(group_trial_data(min_group_size, max_group_size, block_lengths))
