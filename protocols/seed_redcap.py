"""REDCap project files of the seed trials that are not PerPAIN (partners4pain,
rush-mechanisms, …), generated from their protocol files as PerPAIN's are.

    .venv/bin/python -m protocols.seed_redcap partners4pain
    .venv/bin/python -m protocols.seed_redcap pcst-smart    # SMART: stage fields too

The building blocks (field rows, choices, the safety and adverse-event forms, events,
event mappings, repeating instruments, CSV layout) are PerPAIN's generator's, so every
trial's project has the same shape; only the forms that differ are written here: the
screening form with the site, the protocol's eligibility criteria and its stratification
fields (and the group field under group randomization); the PEG (pain, enjoyment of
life, general activity) at baseline and follow-up; the withdrawal and allocation forms.
Re-run after changing the protocol and commit the result (a test fails when they differ).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
PEG_ITEMS = (("pain", "Average pain in the past week (0 = no pain, 10 = pain as bad as you can "
                      "imagine)"),
             ("enjoyment", "How much pain interfered with your enjoyment of life in the past "
                           "week (0-10)"),
             ("activity", "How much pain interfered with your general activity in the past "
                          "week (0-10)"))
WITHDRAWAL_REASONS = {"1": "Participant's decision", "2": "Lost to follow-up",
                      "3": "Adverse event", "4": "Investigator's decision", "5": "Other"}


def perpain_generator() -> ModuleType:
    """PerPAIN's generator, loaded from its file (its folder name is no package name)."""
    path = HERE / "perpain-pilot" / "redcap" / "generate.py"
    spec = importlib.util.spec_from_file_location("perpain_redcap_generate", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def screening(g: ModuleType, p: Any) -> Iterator[dict[str, str]]:
    f, r = p.redcap.fields, p.randomization
    yield g.field(f.record_id, "screening", "text", "Record ID")
    yield g.field("scr_date", "screening", "text", "Date of screening", validation="date_ymd")
    if r.site.field:
        codes = r.site.codes or {s: s for s in r.sites}
        yield g.field(r.site.field, "screening", "radio", "Site", required="y",
                      choices=g.choices((code, g.humane(site)) for code, site in codes.items()))
    if r.group is not None:  # group randomization: the pre-formed group the person joins
        yield g.field(r.group.group_field, "screening", "text", "Rehabilitation group",
                      required="y", note="the group id as the clinic names it "
                      "(letters, digits, '_', '.', '-'), e.g. G2011-03; the group is "
                      "randomized as a whole when it is closed")
    for factor in r.factors:
        if factor.codes is not None:
            yield g.field(factor.field, "screening", "radio", factor.label or g.humane(factor.key),
                          required="y", choices=g.choices(
                              (code, g.humane(level)) for code, level in factor.codes.items()))
        else:
            cuts = ", ".join(f"{c:g}" for c in factor.cut_points or [])
            yield g.field(factor.field, "screening", "text", factor.label or g.humane(factor.key),
                          validation="number", min="0", max="10", required="y",
                          note=f"stratification factor, cut at {cuts}")
    if p.eligibility is not None:
        for i, c in enumerate(p.eligibility.inclusion):
            yield g.field(c.field, "screening", "yesno", c.label,
                          header="Inclusion criteria" if i == 0 else "")
        for i, c in enumerate(p.eligibility.exclusion):
            yield g.field(c.field, "screening", "yesno", c.label,
                          header="Exclusion criteria" if i == 0 else "")
    yield g.field(f.eligible, "screening", "yesno", "Eligible for the trial?", required="y",
                  note="yes only if every inclusion criterion is met and no exclusion applies")
    yield g.field("scr_ineligible_reason", "screening", "notes", "Why not eligible?",
                  branching=f"[{f.eligible}] = '0'")


def consent(g: ModuleType, p: Any) -> Iterator[dict[str, str]]:
    # PerPAIN's consent form is the same shape: reuse it, without its screening fields.
    for row in g.screening_and_consent(_with_screening_date(p)):
        if row["form_name"] == "consent":
            yield row


def _with_screening_date(p: Any) -> Any:
    """PerPAIN's generator reads the screening date field from the reports section."""
    class View:
        def __getattr__(self, name: str) -> Any:
            if name == "reports":
                return type("R", (), {"screening_date_field": "scr_date"})()
            return getattr(p, name)
    return View()


def measures(g: ModuleType, p: Any) -> Iterator[dict[str, str]]:
    f = p.redcap.fields
    yield g.field(f.age, "demographics", "text", "Age (years)", validation="integer", min="18",
                  max="110", required="y")
    yield g.field(f.sex, "demographics", "radio", "Sex", required="y", choices=g.choices(
        (code, {1: "Female", 0: "Male"}[value]) for code, value in p.redcap.sex_codes.items()))
    for prefix, form in (("peg_", "baseline_measures"), ("pegf_", "peg_followup")):
        for key, label in PEG_ITEMS:
            yield g.field(f"{prefix}{key}", form, "radio", f"PEG: {label}",
                          choices=g.scale(0, 10), custom_alignment="LH")


def withdrawal_and_allocation(g: ModuleType, p: Any) -> Iterator[dict[str, str]]:
    f, wd, al = p.redcap.fields, p.redcap.withdrawal_form, p.redcap.allocation_form
    yield g.field(f.withdrawn, wd, "yesno", "Has the participant withdrawn or been lost?",
                  required="y")
    yield g.field("wd_date", wd, "text", "Date of withdrawal", validation="date_ymd",
                  branching=f"[{f.withdrawn}] = '1'")
    yield g.field("wd_reason", wd, "radio", "Reason", branching=f"[{f.withdrawn}] = '1'",
                  choices=g.choices(WITHDRAWAL_REASONS.items()))
    yield g.field("wd_preventable", wd, "yesno", "Could the study design have prevented it?",
                  branching=f"[{f.withdrawn}] = '1'")
    written = "Written by Tailor; staff cannot edit it."
    yield g.field(f.allocation_number, al, "text", "Allocation number", note=written,
                  annotation="@READONLY")
    yield g.field(f.allocation_module, al, "dropdown", "Allocated program", note=written,
                  annotation="@READONLY", choices=g.choices((m.key, m.label) for m in p.modules))
    yield g.field(f.allocation_time, al, "text", "Allocation time (UTC)", note=written,
                  validation="datetime_seconds_ymd", annotation="@READONLY")
    for stage in p.randomization.stages:  # SMART: filled in the stage timepoint's event
        options = {o.key: o.label for o in [*stage.responders, *stage.non_responders]}
        yield g.field(stage.number_field, al, "text", f"Stage {stage.key}: allocation number",
                      note=written, annotation="@READONLY")
        yield g.field(stage.option_field, al, "dropdown", f"Stage {stage.key}: allocated option",
                      note=written, annotation="@READONLY", choices=g.choices(options.items()))


def stage_mappings(p: Any) -> list[dict[str, str]]:
    """The allocation form in each stage timepoint's event, where its stage is written."""
    events = dict.fromkeys(p.timepoint_by_key[s.timepoint].redcap_event
                           for s in p.randomization.stages)
    return [{"arm_num": str(p.redcap.arm_number), "unique_event_name":
             p.redcap.unique_event_name(e), "form": p.redcap.allocation_form} for e in events]


def user_roles(p: Any, forms: list[str]) -> list[dict[str, Any]]:
    """Outcome assessors are masked (the seeds' single masking): no role that enters
    follow-up data sees the allocation form."""
    allocation = p.redcap.allocation_form

    def role(label: str, entry: dict[str, int]) -> dict[str, Any]:
        flags = {"design": 0, "user_rights": 0, "data_access_groups": 0, "reports": 1,
                 "api_export": 0, "api_import": 0, "record_create": 1, "record_delete": 0}
        return {"role_label": label, **flags, "forms": entry,
                "forms_export": {f: 0 for f in forms}}

    return [role("Site data entry (blinded to the allocation)",
                 {f: 0 if f == allocation else 1 for f in forms}),
            role("Program facilitator / coordinator (sees the allocation)",
                 {f: 2 if f == allocation else 1 for f in forms}),
            role("Outcome assessor (blinded)", {f: 0 if f == allocation else 1 for f in forms})]


def render(protocol_path: Path) -> dict[str, str]:
    """File name -> content of every generated file."""
    root = HERE.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from services.core.protocol import load_protocol
    from sim.redcap.design import DICTIONARY_HEADERS

    g, p = perpain_generator(), load_protocol(protocol_path)
    fields = [*screening(g, p), *consent(g, p), *measures(g, p), *g.safety_forms(p),
              *withdrawal_and_allocation(g, p)]
    forms = list(dict.fromkeys(r["form_name"] for r in fields))
    arm = [{"arm_num": str(p.redcap.arm_number), "name": p.redcap.arm_name}]
    return {
        "data_dictionary.csv": g.to_csv(fields, list(g.COLUMNS), list(DICTIONARY_HEADERS)),
        "arms.csv": g.to_csv(arm, ["arm_num", "name"]),
        "events.csv": g.to_csv(g.event_rows(p), ["event_name", "arm_num", "day_offset",
                                                 "offset_min", "offset_max", "unique_event_name",
                                                 "custom_event_label"]),
        "instrument_event_mapping.csv": g.to_csv(g.mapping_rows(p, forms) + stage_mappings(p),
                                                 ["arm_num", "unique_event_name", "form"]),
        "repeating_instruments.csv": g.to_csv(g.repeating_rows(p),
                                              ["event_name", "form_name", "custom_form_label"]),
        "user_roles.json": json.dumps(user_roles(p, forms), indent=1) + "\n",
        "surveys.json": json.dumps(g.surveys(p), indent=1) + "\n",
    }


def main(argv: list[str]) -> None:
    for name in argv or ["partners4pain", "rush-mechanisms", "iact-mmrp", "pcst-smart"]:
        folder = HERE / name / "redcap"
        folder.mkdir(parents=True, exist_ok=True)
        for file, content in render(HERE / f"{name}.yaml").items():
            (folder / file).write_text(content, encoding="utf-8")
            print(f"wrote {folder / file}")


if __name__ == "__main__":
    main(sys.argv[1:])
