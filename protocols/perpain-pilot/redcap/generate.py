"""Write the PerPAIN pilot's REDCap project files from protocols/perpain-pilot.yaml.

    .venv/bin/python protocols/perpain-pilot/redcap/generate.py

Field names, codes, events and mappings come from the protocol file (the `redcap`,
`timepoints`, `modules`, `reminders`, `safety` and `diary` sections; `surveys.json` from the
timepoints' `surveys` and the diary's `answer_form`), so the dictionary and the
code that reads it cannot drift apart. The CSV files beside this script are the
artifact a REDCap administrator imports; re-run the script after changing the protocol
and commit the result (a test fails when they differ).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROTOCOL = ROOT / "protocols" / "perpain-pilot.yaml"

# MPI-D: items per part; 1_14 and 3_11 also allow -99 (not applicable); the pain severity
# scale (1_1, 1_7, 1_12) is repeated at the follow-ups.
MPID_PARTS = {1: 22, 2: 11, 3: 18}
MPID_NOT_APPLICABLE = {"1_14", "3_11"}
MPID_PAIN_SEVERITY = ("1_1", "1_7", "1_12")
# PANAS items are stored by meaning (the German order differs from the English one)
PANAS_ITEMS = ("interested", "distressed", "excited", "upset", "strong", "guilty", "scared",
               "hostile", "enthusiastic", "proud", "irritable", "alert", "ashamed", "inspired",
               "nervous", "determined", "attentive", "jittery", "active", "afraid")
PANAS_POSITIVE = frozenset({"interested", "excited", "strong", "enthusiastic", "proud", "alert",
                            "inspired", "determined", "attentive", "active"})
ODI_SECTIONS = ("Pain intensity", "Personal care", "Lifting", "Walking", "Sitting", "Standing",
                "Sleeping", "Sex life", "Social life", "Travelling")
WITHDRAWAL_REASON_LABELS = {"participant_decision": "Participant's decision",
                            "lost_to_follow_up": "Lost to follow-up",
                            "investigator_decision": "Investigator's decision"}
LANGUAGE_NAMES = {"de": "Deutsch", "en": "English"}
CHANNEL_NAMES = {"email": "E-mail", "sms": "SMS (text message)", "phone": "Telephone call",
                 "letter": "Letter"}
COLUMNS = (
    "field_name", "form_name", "section_header", "field_type", "field_label",
    "select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number",
    "text_validation_min", "text_validation_max", "identifier", "branching_logic",
    "required_field", "custom_alignment", "question_number", "matrix_group_name",
    "matrix_ranking", "field_annotation",
)
Row = dict[str, str]


def field(name: str, form: str, ftype: str, label: str, **extra: str) -> Row:
    short = {"choices": "select_choices_or_calculations", "note": "field_note",
             "validation": "text_validation_type_or_show_slider_number",
             "min": "text_validation_min", "max": "text_validation_max",
             "branching": "branching_logic", "header": "section_header",
             "annotation": "field_annotation", "required": "required_field"}
    row = dict.fromkeys(COLUMNS, "")
    row.update(field_name=name, form_name=form, field_type=ftype, field_label=label)
    for key, value in extra.items():
        row[short.get(key, key)] = value
    return row


def choices(pairs: Any) -> str:
    return " | ".join(f"{code}, {label}" for code, label in pairs)


def scale(low: int, high: int) -> str:
    return choices((n, n) for n in range(low, high + 1))


def humane(value: object) -> str:
    text = str(value).replace("_", " ")
    return text[:1].upper() + text[1:]


def coded(codes: dict[str, Any], labels: dict[Any, str] | None = None) -> str:
    return choices((code, (labels or {}).get(value) or humane(value)) for code, value in codes.items())


def screening_and_consent(p: Any) -> Iterator[Row]:
    f = p.redcap.fields
    yield field(f.record_id, "screening", "text", "Record ID")
    yield field(p.reports.screening_date_field, "screening", "text", "Date of screening",
                validation="date_ymd")
    yield field("scr_diagnosis", "screening", "radio", "Main pain diagnosis", choices=choices([
        (1, "Non-specific chronic back pain"), (2, "Osteoarthritis"),
        (3, "Fibromyalgia syndrome"), (4, "Rheumatoid arthritis")]))
    yield field("scr_pain_months", "screening", "text", "For how many months has the pain lasted?",
                validation="integer", min="0", max="720", note="Inclusion: at least 3 months")
    yield field("scr_pain_intensity", "screening", "text",
                "Average pain intensity over the last week (0 = no pain, 10 = worst imaginable)",
                validation="integer", min="0", max="10", annotation="@FORCE-MINMAX")
    yield field("scr_mobile_ok", "screening", "yesno", "Able to see and use a mobile telephone?")
    yield field(f.eligible, "screening", "yesno", "Eligible for the trial?", required="y")
    yield field("scr_ineligible_reason", "screening", "notes", "Why not eligible?",
                branching=f"[{f.eligible}] = '0'")
    yield field(f.consent, "consent", "yesno", "Written informed consent given?", required="y")
    yield field("cons_date", "consent", "text", "Date of consent", validation="date_ymd",
                branching=f"[{f.consent}] = '1'")
    yield field("cons_email", "consent", "text", "E-mail address", validation="email",
                identifier="y", header="Contact details for assessment reminders")
    yield field("cons_mobile", "consent", "text", "Mobile phone number", identifier="y",
                note="International format, e.g. +49 151 23456789")
    yield field("cons_address", "consent", "notes", "Postal address", identifier="y")
    yield field("cons_language", "consent", "radio", "Language for messages",
                choices=choices((c, LANGUAGE_NAMES.get(c, c)) for c in p.reminders.languages))
    yield field("cons_timezone", "consent", "text", "Time zone (IANA name)",
                note="e.g. Europe/Berlin; reminders respect quiet hours in this zone",
                annotation=f"@DEFAULT='{p.reminders.default_timezone}'")
    channels = list(dict.fromkeys(step.channel for step in p.reminders.steps))
    yield field("cons_optout", "consent", "checkbox", "Does NOT want reminders by",
                choices=choices((c, CHANNEL_NAMES.get(c, humane(c))) for c in channels))


def baseline_questionnaires(p: Any) -> Iterator[Row]:
    f = p.redcap.fields
    sex_labels = {1: "Female", 0: "Male"}
    yield field(f.age, "demographics", "text", "Age (years)", validation="integer", min="18",
                max="99", annotation="@FORCE-MINMAX", required="y")
    yield field(f.sex, "demographics", "radio", "Sex", required="y", choices=choices(
        (code, sex_labels[value]) for code, value in p.redcap.sex_codes.items()))
    for part, count in MPID_PARTS.items():
        for n in range(1, count + 1):
            item = f"{part}_{n}"
            options = scale(0, 6) + (" | -99, not applicable" if item in MPID_NOT_APPLICABLE else "")
            yield field(f"{f.mpid_item_prefix}{item}", "mpid", "radio",
                        f"MPI-D part {part}, item {n}", choices=options,
                        header=f"MPI-D part {part}" if n == 1 else "", custom_alignment="LH")
    for n in range(1, 15):
        yield field(f"hads_{n}", "hads", "radio",
                    f"HADS item {n} ({'anxiety' if n % 2 else 'depression'})",
                    choices=scale(0, 3), note="scored points 0-3", custom_alignment="LH")
    panas = choices([(1, "very slightly or not at all"), (2, "a little"), (3, "moderately"),
                     (4, "quite a bit"), (5, "extremely")])
    for word in PANAS_ITEMS:
        kind = "positive" if word in PANAS_POSITIVE else "negative"
        yield field(f"panas_{word}", "panas", "radio", f"PANAS: {word} ({kind} affect)",
                    choices=panas)
    for n, section in enumerate(ODI_SECTIONS, start=1):
        yield field(f"odi_{n}", "odi", "radio", f"ODI section {n}: {section}",
                    choices=scale(0, 5), note="0 = no limitation ... 5 = most severe",
                    custom_alignment="LH")


def follow_up_questionnaires(p: Any) -> Iterator[Row]:
    change = choices([(1, "very much improved"), (2, "much improved"), (3, "minimally improved"),
                      (4, "no change"), (5, "minimally worse"), (6, "much worse"),
                      (7, "very much worse")])
    for item in MPID_PAIN_SEVERITY:
        yield field(f"mpidps_{item}", "mpid_ps", "radio", f"MPI-D pain severity, item {item}",
                    choices=scale(0, 6), custom_alignment="LH")
    yield field("pgic_rating", "pgic", "radio", "Patient's global impression of change",
                choices=change)
    yield field("tgic_rating", "pgic", "radio", "Therapist's global impression of change",
                choices=change)
    yield field("wm_days_off_work", "work_medication", "text",
                "Days out of work because of pain since the last assessment",
                validation="integer", min="0", max="366")
    yield field("wm_med_change", "work_medication", "radio", "Pain medication since the last "
                "assessment", choices=choices([(0, "No change"), (1, "Started or increased"),
                                               (2, "Reduced"), (3, "Stopped"),
                                               (4, "Switched to another medication")]))
    yield field("wm_med_details", "work_medication", "notes", "Which medication, what change?",
                branching="[wm_med_change] <> '0' and [wm_med_change] <> ''")


def safety_forms(p: Any) -> Iterator[Row]:
    form = p.safety.redcap_form
    a, c = form.fields, form.codes
    attribution = coded(c.attribution, {"treatment": "the treatment", "other": "other circumstances"})
    neq, inep_form = form.neq_instrument, form.inep_instrument
    for n in range(1, p.safety.neq_items + 1):
        item = f"{form.neq_prefix}{n}"
        yield field(item, neq, "yesno", f"NEQ item {n}: did this happen?")
        yield field(f"{item}_impact", neq, "radio", f"NEQ item {n}: how negative was it?",
                    choices=choices([(0, "not at all"), (1, "slightly"), (2, "moderately"),
                                     (3, "very"), (4, "extremely")]),
                    branching=f"[{item}] = '1'")
        yield field(f"{item}_attr", neq, "radio", f"NEQ item {n}: caused by", choices=attribution,
                    branching=f"[{item}] = '1'")
    inep = p.safety.inep
    off = inep.bipolar_code_offset
    ends = {-off: " much worse", 0: " unchanged", off: " much better"}
    bipolar = choices((k + off, (f"{k:+d}" if k else "0") + ends.get(k, ""))
                      for k in range(-off, off + 1))
    unipolar = choices([(0, "not at all"), (1, "a little"), (2, "somewhat"), (3, "very much")])
    for n in range(1, inep.items + 1):
        item = f"{form.inep_prefix}{n}"
        yield field(item, inep_form, "radio", f"INEP item {n}",
                    choices=bipolar if n in inep.bipolar_items else unipolar)
        yield field(f"{item}_attr", inep_form, "radio", f"INEP item {n}: caused by",
                    choices=attribution)
    yield from adverse_event(p.redcap.adverse_event_form, a, c)


def adverse_event(ae: str, a: Any, c: Any) -> Iterator[Row]:
    yes = f"[{a.serious}] = '1'"
    yield field(a.onset_date, ae, "text", "Onset date", validation="date_ymd", required="y")
    yield field(a.awareness_time, ae, "text", "Date and time the site became aware",
                validation="datetime_ymd", note="site local time", required="y")
    yield field(a.verbatim_term, ae, "text", "Adverse event (verbatim term)", required="y")
    yield field(a.severity, ae, "radio", "Severity", choices=coded(c.severity), required="y")
    yield field(a.grade, ae, "radio", "Grade (optional)",
                choices=choices((n, f"Grade {n}") for n in range(1, 6)))
    yield field(a.serious, ae, "yesno", "Serious adverse event?", required="y",
                header="Seriousness (ICH E2A)")
    for key, label in (("death", "Resulted in death"), ("life_threatening", "Life-threatening"),
                       ("hospitalisation", "Required or prolonged hospitalisation"),
                       ("disability", "Persistent or significant disability or incapacity"),
                       ("congenital_anomaly", "Congenital anomaly or birth defect"),
                       ("medically_important", "Other medically important event")):
        yield field(getattr(a, key), ae, "yesno", label, branching=yes)
    yield field(a.relatedness, ae, "radio", "Relationship to the study treatment",
                choices=coded(c.relatedness, {"not": "Not related"}), required="y",
                header="Assessment")
    yield field(a.expected, ae, "yesno", "Expected (listed in the protocol)?")
    yield field(a.outcome, ae, "radio", "Outcome", choices=coded(c.outcome), required="y")
    yield field(a.action_taken, ae, "radio", "Action taken with the study treatment",
                choices=coded(c.action_taken))
    yield field(a.reporter, ae, "text", "Reported by (name and role)", required="y")
    yield field(a.meddra_version, ae, "text", "MedDRA version", header="Coding (MedDRA)")
    yield field(a.meddra_llt, ae, "text", "MedDRA lowest level term code", validation="integer")
    yield field(a.meddra_pt, ae, "text", "MedDRA preferred term code", validation="integer")
    yield field(a.narrative, ae, "notes", "Narrative")
    yield field(a.follow_up_reason, ae, "notes", "What changed (when this event is updated)?")


def withdrawal_and_allocation(p: Any) -> Iterator[Row]:
    f = p.redcap.fields
    wd = p.redcap.withdrawal_form
    yield field(f.withdrawn, wd, "yesno", "Has the participant withdrawn or been lost?",
                required="y")
    # Reason codes and field names come from the protocol's reports section (the CONSORT
    # flow reads them: lost to follow-up vs discontinued, preventable by design or not).
    w = p.reports.withdrawal
    other = next(code for code, key in w.reasons.items() if key == "other")
    yield field(w.date, wd, "text", "Date of withdrawal", validation="date_ymd",
                branching=f"[{f.withdrawn}] = '1'")
    yield field(w.reason, wd, "radio", "Reason", branching=f"[{f.withdrawn}] = '1'",
                choices=coded(w.reasons, WITHDRAWAL_REASON_LABELS))
    yield field(f"{w.reason}_other", wd, "text", "Other reason",
                branching=f"[{w.reason}] = '{other}'")
    yield field(w.preventable, wd, "yesno", "Could the study design have prevented it?",
                branching=f"[{f.withdrawn}] = '1'")
    if p.reports.received_field:
        yield field(p.reports.received_field, wd, "yesno",
                    "Has the participant started the allocated treatment module?")
    al = p.redcap.allocation_form
    written = "Written by Tailor; staff cannot edit it."
    yield field(f.allocation_number, al, "text", "Allocation number", note=written,
                annotation="@READONLY")
    yield field(f.allocation_module, al, "dropdown", "Treatment module", note=written,
                annotation="@READONLY", choices=choices((m.key, m.label) for m in p.modules))
    yield field(f.allocation_time, al, "text", "Allocation time (UTC)", note=written,
                validation="datetime_seconds_ymd", annotation="@READONLY")


def diary_answers(p: Any) -> Iterator[Row]:
    """The diary module's momentary questions (EMDI, a positive activity diary: the absence
    of pain, positive mood, pleasant events and activity, never pain or distress), one
    instance of a repeating survey per prompt. Only the diary module's participants answer
    it, so its data show the module: blinded roles get no access (`user_roles`)."""
    answers = p.diary_answers
    if answers is None:
        return
    form = answers[0]
    yield field(f"{form}_pain_free", form, "yesno",
                "Since the last prompt, was there a moment without pain?",
                header="Right now and since the last prompt")
    yield field(f"{form}_mood", form, "radio",
                "How good is your mood right now? (0 = not good at all, 6 = very good)",
                choices=scale(0, 6), custom_alignment="LH")
    yield field(f"{form}_activity", form, "radio", "What are you doing right now?",
                choices=choices([(1, "Working"), (2, "Household or errands"),
                                 (3, "Hobby or leisure"), (4, "Being with other people"),
                                 (5, "Exercise or physical activity"), (6, "Resting"),
                                 (7, "Something else")]))
    yield field(f"{form}_pleasant", form, "yesno",
                "Has something pleasant happened since the last prompt?")
    yield field(f"{form}_pleasant_what", form, "notes", "What was it?",
                branching=f"[{form}_pleasant] = '1'")


def dictionary_rows(p: Any) -> list[Row]:
    return [*screening_and_consent(p), *baseline_questionnaires(p),
            *follow_up_questionnaires(p), *safety_forms(p), *withdrawal_and_allocation(p),
            *diary_answers(p)]


def event_name(redcap_event: str) -> str:
    """A display name whose REDCap slug is `redcap_event` (`t1_post` -> `T1 post`)."""
    text = redcap_event.replace("_", " ")
    return text[:1].upper() + text[1:]


def event_rows(p: Any) -> list[Row]:
    days: dict[str, int] = {}
    rows = []
    for t in p.timepoints:
        start = days.get(t.anchor, 0)
        days[t.key] = start + t.offset_days
        rows.append({"event_name": event_name(t.redcap_event), "arm_num": str(p.redcap.arm_number),
                     "day_offset": str(days[t.key]), "offset_min": str(-t.window_days[0]),
                     "offset_max": str(t.window_days[1]),
                     "unique_event_name": p.redcap.unique_event_name(t.redcap_event),
                     "custom_event_label": ""})
    answers = p.diary_answers
    if answers is not None:  # the diary's own event, from the day after allocation on
        rows.insert(1, {"event_name": event_name(answers[1]),
                        "arm_num": str(p.redcap.arm_number), "day_offset": "1",
                        "offset_min": "0", "offset_max": str(p.diary.days),
                        "unique_event_name": p.redcap.unique_event_name(answers[1]),
                        "custom_event_label": ""})
    return rows


def mapping_rows(p: Any, forms: list[str]) -> list[Row]:
    rows = []
    every_event = {p.redcap.withdrawal_form, p.redcap.adverse_event_form}
    for t in p.timepoints:
        here = set(t.forms) | every_event
        if t.redcap_event == p.redcap.baseline_event:
            here.add(p.redcap.allocation_form)
        rows += [{"arm_num": str(p.redcap.arm_number),
                  "unique_event_name": p.redcap.unique_event_name(t.redcap_event), "form": form}
                 for form in forms if form in here]
    answers = p.diary_answers
    if answers is not None:  # the diary event holds the diary answers only
        rows.insert(next(i for i, r in enumerate(rows) if r["unique_event_name"] !=
                         p.redcap.unique_event_name(p.timepoints[0].redcap_event)),
                    {"arm_num": str(p.redcap.arm_number),
                     "unique_event_name": p.redcap.unique_event_name(answers[1]),
                     "form": answers[0]})
    return rows


def repeating_rows(p: Any) -> list[Row]:
    f = p.safety.redcap_form.fields
    rows = [{"event_name": p.redcap.unique_event_name(t.redcap_event),
             "form_name": p.redcap.adverse_event_form,
             "custom_form_label": f"[{f.verbatim_term}] ([{f.onset_date}])"} for t in p.timepoints]
    answers = p.diary_answers
    if answers is not None:  # one instance per prompt (instance = day x prompts + index + 1)
        rows.append({"event_name": p.redcap.unique_event_name(answers[1]),
                     "form_name": answers[0], "custom_form_label": ""})
    return rows


def user_roles(p: Any, fields: list[Row], forms: list[str]) -> list[dict[str, Any]]:
    """REDCap user roles (the API's `userRole` import format) in which no role sees both the
    written-back allocation and the baseline MPI-D answers: with the shipped model they give
    the cluster, and cluster + module give the arm. No role has API or user-rights access;
    Tailor's own API user is the only account that reads MPI-D and writes the allocation."""
    allocation = p.redcap.allocation_form
    prefix = p.redcap.fields.mpid_item_prefix
    mpid = {r["form_name"] for r in fields
            if r["field_name"].startswith(prefix) and r["form_name"] in p.redcap.baseline_forms}
    baseline = set(p.redcap.baseline_forms)
    every_event = {p.redcap.withdrawal_form, p.redcap.adverse_event_form}
    # Diary answers exist only for the diary module's participants: like the allocation,
    # they show the module, so whoever may not see the allocation may not see them.
    module = {allocation} | ({p.diary_answers[0]} if p.diary_answers else set())

    def role(label: str, entry: dict[str, int]) -> dict[str, Any]:
        flags = {"design": 0, "user_rights": 0, "data_access_groups": 0, "reports": 1,
                 "api_export": 0, "api_import": 0, "record_create": 1, "record_delete": 0}
        return {"role_label": label, **flags, "forms": entry,
                "forms_export": {f: 0 for f in forms}}

    return [
        role("Site data entry (blinded to the module)",
             {f: 0 if f in module else 1 for f in forms}),
        role("Therapist / coordinator (sees the module, not MPI-D)",
             {f: 2 if f in module else 0 if f in mpid else 1 for f in forms}),
        role("Outcome assessor (blinded)",
             {f: 1 if f not in baseline | module or f in every_event else 0
              for f in forms}),
    ]


def surveys(p: Any) -> dict[str, dict[str, str]]:
    """Instruments enabled as surveys (Online Designer → Enable as survey): the forms the
    protocol's timepoints name under `surveys`, with Save & Return Later on (participants
    may answer in several sittings). REDCap's API cannot enable surveys; the emulator
    reads this file, a REDCap administrator ticks the same instruments."""
    names = dict.fromkeys(s for t in p.timepoints for s in t.surveys)
    out = {form: {"save_and_return": "1"} for form in names}
    if p.diary_answers is not None:  # a momentary answer is given in one sitting; each
        # prompt links to its own instance, so the diary is not active in the survey queue
        out[p.diary_answers[0]] = {"save_and_return": "0", "survey_queue": "0"}
    return out


def to_csv(rows: list[Row], columns: list[str], header: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header or columns)
    writer.writerows([[r[c] for c in columns] for r in rows])
    return out.getvalue()


def render(protocol_path: Path = PROTOCOL) -> dict[str, str]:
    """File name -> content of every generated file."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from services.core.protocol import load_protocol
    from sim.redcap.design import DICTIONARY_HEADERS

    p = load_protocol(protocol_path)
    fields = dictionary_rows(p)
    forms = list(dict.fromkeys(r["form_name"] for r in fields))
    arm = [{"arm_num": str(p.redcap.arm_number), "name": p.redcap.arm_name}]
    return {
        "data_dictionary.csv": to_csv(fields, list(COLUMNS), list(DICTIONARY_HEADERS)),
        "arms.csv": to_csv(arm, ["arm_num", "name"]),
        "events.csv": to_csv(event_rows(p), ["event_name", "arm_num", "day_offset", "offset_min",
                                             "offset_max", "unique_event_name",
                                             "custom_event_label"]),
        "instrument_event_mapping.csv": to_csv(mapping_rows(p, forms),
                                               ["arm_num", "unique_event_name", "form"]),
        "repeating_instruments.csv": to_csv(repeating_rows(p),
                                            ["event_name", "form_name", "custom_form_label"]),
        "user_roles.json": json.dumps(user_roles(p, fields, forms), indent=1) + "\n",
        "surveys.json": json.dumps(surveys(p), indent=1) + "\n",
    }


def main() -> None:
    for name, content in render().items():
        (HERE / name).write_text(content, encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
