"""The seed trials' REDCap projects: generated from their protocol files as PerPAIN's is,
loadable by the emulator, and holding every field the protocol names (its REDCap fields,
site, stratification factors, group field and eligibility criteria)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.seed_redcap import render
from services.core.protocol import load_protocol
from sim.redcap import load_project_folder

PROTOCOLS = Path(__file__).resolve().parents[3] / "protocols"
SEEDS = ["partners4pain", "rush-mechanisms", "iact-mmrp", "pcst-smart"]


@pytest.mark.parametrize("name", SEEDS)
def test_committed_files_are_what_the_generator_writes(name: str) -> None:
    for file, content in render(PROTOCOLS / f"{name}.yaml").items():
        committed = (PROTOCOLS / name / "redcap" / file).read_text(encoding="utf-8")
        assert committed == content, f"{file} is stale: run python -m protocols.seed_redcap {name}"


@pytest.mark.parametrize("name", SEEDS)
def test_every_field_the_protocol_names_is_in_the_project(name: str) -> None:
    protocol = load_protocol(PROTOCOLS / f"{name}.yaml")
    design = load_project_folder(PROTOCOLS / name / "redcap")
    fields = design.field_by_name()
    named = protocol.redcap.fields.model_dump(exclude={"mpid_item_prefix"})
    r = protocol.randomization
    wanted = {*(v for v in named.values() if v), *(f.field for f in r.factors),
              *(protocol.eligibility.fields if protocol.eligibility else [])}
    if r.site.field:
        wanted.add(r.site.field)
    if r.group is not None:
        wanted.add(r.group.group_field)
    for stage in r.stages:  # SMART: the rule's fields and the stage's written-back fields
        wanted |= {stage.rule.field, stage.rule.baseline_field, stage.number_field,
                   stage.option_field}
        assert fields[stage.number_field].form_name == protocol.redcap.allocation_form
    assert sorted(wanted - set(fields)) == []
    if r.site.codes:  # the site field's choices are the protocol's site codes
        assert r.site.field is not None
        assert {code for code, _label in fields[r.site.field].choices} == set(r.site.codes)
    for t in protocol.timepoints:
        assert set(t.forms) <= {f.form_name for f in fields.values()}
