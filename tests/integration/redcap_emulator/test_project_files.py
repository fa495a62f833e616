"""The trial's REDCap project files: valid for REDCap, generated from the protocol, and
holding every field, instrument and event the protocol file names."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from services.core.protocol import TrialProtocol, load_protocol
from sim.redcap import load_project_folder
from sim.redcap.design import DICTIONARY_HEADERS, FieldDef, ProjectDesign
from sim.redcap.testing import PERPAIN_REDCAP

PROTOCOL = Path(__file__).resolve().parents[3] / "protocols" / "perpain-pilot.yaml"


@pytest.fixture(scope="module")
def protocol() -> TrialProtocol:
    return load_protocol(PROTOCOL)


@pytest.fixture(scope="module")
def design() -> ProjectDesign:
    return load_project_folder(PERPAIN_REDCAP)


@pytest.fixture(scope="module")
def fields(design: ProjectDesign) -> dict[str, FieldDef]:
    return design.field_by_name()


def test_dictionary_has_redcaps_18_standard_columns() -> None:
    with (PERPAIN_REDCAP / "data_dictionary.csv").open(encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == DICTIONARY_HEADERS
    assert len(header) == 18


def test_committed_files_are_what_the_generator_writes_from_the_protocol() -> None:
    spec = importlib.util.spec_from_file_location("perpain_redcap_generate",
                                                  PERPAIN_REDCAP / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, content in generator.render(PROTOCOL).items():
        committed = (PERPAIN_REDCAP / name).read_text(encoding="utf-8")
        assert committed == content, f"{name} is stale: run protocols/perpain-pilot/redcap/generate.py"


def test_record_id_comes_first_and_every_redcap_field_of_the_protocol_exists(
        protocol: TrialProtocol, design: ProjectDesign, fields: dict[str, FieldDef]) -> None:
    named = protocol.redcap.fields.model_dump(exclude={"mpid_item_prefix"})
    assert design.record_id_field == protocol.redcap.fields.record_id
    missing = {key: name for key, name in named.items() if name and name not in fields}
    assert missing == {}


def test_mpid_items_exist_by_prefix_with_0_to_6_and_not_applicable_where_allowed(
        protocol: TrialProtocol, fields: dict[str, FieldDef]) -> None:
    prefix = protocol.redcap.fields.mpid_item_prefix
    items = [f"{part}_{n}" for part, count in ((1, 22), (2, 11), (3, 18))
             for n in range(1, count + 1)]
    assert len(items) == 51
    for item in items:
        f = fields[prefix + item]
        codes = [c for c, _ in f.choices]
        expected = [str(n) for n in range(7)] + (["-99"] if item in ("1_14", "3_11") else [])
        assert (f.form_name, codes) == ("mpid", expected), item
    assert sorted(n for n in fields if n.startswith(prefix)) == sorted(prefix + i for i in items)


def test_every_form_the_protocol_names_is_an_instrument_mapped_to_its_event(
        protocol: TrialProtocol, design: ProjectDesign) -> None:
    r = protocol.redcap
    diary = protocol.diary_answers
    assert diary is not None
    assert [e.unique_event_name for e in design.events if e.unique_event_name !=
            r.unique_event_name(diary[1])] == [
        r.unique_event_name(t.redcap_event) for t in protocol.timepoints]
    for t in protocol.timepoints:
        mapped = design.forms_in_event(r.unique_event_name(t.redcap_event))
        assert set(t.forms) <= set(mapped), t.key
        assert {r.withdrawal_form, r.adverse_event_form} <= set(mapped), t.key
    baseline = design.forms_in_event(r.unique_event_name(r.baseline_event))
    assert set(r.baseline_forms) | {r.allocation_form} <= set(baseline)
    assert [e for e, forms in design.mapping.items() if r.allocation_form in forms] == [
        r.unique_event_name(r.baseline_event)]


def test_adverse_event_repeats_in_every_event_and_nothing_else_repeats(
        protocol: TrialProtocol, design: ProjectDesign) -> None:
    diary = protocol.diary_answers
    assert diary is not None
    diary_event = protocol.redcap.unique_event_name(diary[1])
    for event in design.event_names():
        if event != diary_event:
            assert set(design.repeating[event]) == {protocol.redcap.adverse_event_form}


def test_the_diary_answers_are_a_repeating_survey_in_an_event_of_their_own(
        protocol: TrialProtocol, design: ProjectDesign) -> None:
    """One instance per prompt: the diary survey repeats in the diary event, which holds
    nothing else; participants answer it as a survey, in one sitting."""
    form, event = protocol.diary_answers or ("", "")
    unique = protocol.redcap.unique_event_name(event)
    assert design.forms_in_event(unique) == [form]
    assert set(design.repeating[unique]) == {form}
    assert [e for e, forms in design.mapping.items() if form in forms] == [unique]
    assert design.surveys[form]["save_and_return"] == "0"
    assert event not in {t.redcap_event for t in protocol.timepoints}
    assert protocol.diary is not None and protocol.diary.prompt_link is None
    own = [f.field_name for f in design.fields_of(form)]
    assert own and all(name.startswith(f"{form}_") for name in own)


def test_safety_fields_and_codes_match_the_dictionary(
        protocol: TrialProtocol, fields: dict[str, FieldDef]) -> None:
    form = protocol.safety.redcap_form
    for key, name in form.fields.model_dump().items():
        assert fields[name].form_name == protocol.redcap.adverse_event_form, key
    codes = form.codes
    f = form.fields
    for name, table in ((f.severity, codes.severity), (f.relatedness, codes.relatedness),
                        (f.outcome, codes.outcome), (f.action_taken, codes.action_taken)):
        assert {c for c, _ in fields[name].choices} == set(table), name
    for name in (f.serious, f.death, f.life_threatening, f.hospitalisation, f.disability,
                 f.congenital_anomaly, f.medically_important, f.expected):
        assert fields[name].field_type == "yesno" and set(codes.yes_no) == {"0", "1"}
    for n in range(1, protocol.safety.neq_items + 1):
        p = f"{form.neq_prefix}{n}"
        assert (fields[p].field_type, fields[f"{p}_impact"].form_name) == (
            "yesno", form.neq_instrument)
        assert {c for c, _ in fields[f"{p}_attr"].choices} == set(codes.attribution)
    inep = protocol.safety.inep
    for n in range(1, inep.items + 1):
        top = 2 * inep.bipolar_code_offset if n in inep.bipolar_items else 3
        assert [c for c, _ in fields[f"{form.inep_prefix}{n}"].choices] == [
            str(k) for k in range(top + 1)]
        assert fields[f"{form.inep_prefix}{n}_attr"].form_name == form.inep_instrument


def test_coded_fields_follow_the_protocol(protocol: TrialProtocol,
                                          fields: dict[str, FieldDef]) -> None:
    f = protocol.redcap.fields
    assert {c for c, _ in fields[f.sex].choices} == set(protocol.redcap.sex_codes)
    assert [c for c, _ in fields[f.allocation_module].choices] == protocol.module_keys
    assert [c for c, _ in fields[f.language or ""].choices] == protocol.reminders.languages
    channels = {s.channel for s in protocol.reminders.steps}
    assert {c for c, _ in fields[f.contact_opt_out or ""].choices} == channels
    assert fields[f.eligible].field_type == fields[f.consent].field_type == "yesno"
    assert fields[f.withdrawn].field_type == "yesno"
    age = fields[f.age]
    assert (age.validation, age.text_validation_min, age.text_validation_max) == (
        "integer", "18", "99")


def test_allocation_fields_are_read_only_for_staff(protocol: TrialProtocol,
                                                   design: ProjectDesign) -> None:
    allocation = design.fields_of(protocol.redcap.allocation_form)
    f = protocol.redcap.fields
    assert [x.field_name for x in allocation] == [
        f.allocation_number, f.allocation_module, f.allocation_time]
    assert all("@READONLY" in x.action_tags() for x in allocation)


def test_arm_and_cluster_never_appear_in_the_project(protocol: TrialProtocol,
                                                     design: ProjectDesign) -> None:
    secret_words = {c.key.lower() for c in protocol.clusters} | {
        c.label.lower() for c in protocol.clusters} | {a.key.lower() for a in protocol.arms} | {
        a.label.lower() for a in protocol.arms} | {"cluster", "arm", "personalized",
                                                   "non_personalized"}
    for f in design.fields:
        assert not set(f.field_name.lower().split("_")) & {"arm", "cluster"}, f.field_name
        texts = [f.field_label, f.field_note, f.section_header] + [
            x for pair in f.choices for x in pair]
        for text in texts:
            words = set(text.lower().replace("(", " ").replace(")", " ").split())
            assert not words & secret_words - {"id"}, (f.field_name, text)
            assert text.lower() not in secret_words, (f.field_name, text)


def test_withdrawal_reasons_and_preventable_class_the_reports_read_exist(
        protocol: TrialProtocol, fields: dict[str, FieldDef]) -> None:
    assert protocol.reports is not None
    w, form = protocol.reports.withdrawal, protocol.redcap.withdrawal_form
    assert {fields[name].form_name for name in (w.date, w.reason, w.preventable)} == {form}
    codes = [c.split(",")[0].strip()
             for c in fields[w.reason].select_choices_or_calculations.split("|")]
    assert codes == list(w.reasons)
    assert fields[w.preventable].field_type == "yesno"
    assert fields[protocol.reports.screening_date_field].form_name == "screening"


def test_the_timepoints_surveys_are_exactly_the_projects_surveys_and_pgic_is_not_one(
        protocol: TrialProtocol, design: ProjectDesign) -> None:
    named = {s for t in protocol.timepoints for s in t.surveys}
    diary = protocol.diary_answers
    assert diary is not None
    assert set(design.surveys) == named | {diary[0]} and named
    # pgic also holds the therapist's rating: a participant's survey would show it.
    assert "pgic" not in design.surveys
    assert {f.form_name for f in design.fields if f.field_name == "tgic_rating"} == {"pgic"}
    assert all(s["save_and_return"] == "1" for f, s in design.surveys.items() if f in named)
    for t in protocol.timepoints:
        mapped = design.forms_in_event(protocol.redcap.unique_event_name(t.redcap_event))
        assert set(t.surveys) <= set(mapped), t.key
