"""Reading a REDCap project XML (CDISC ODM 1.3.1 with REDCap's vendor extensions).

This is the file REDCap's "Download project XML" writes and its API accepts as
`content=project&odm=...`: global settings, events and arms, instruments, fields
with their code lists and range checks, repeating setup, DAGs and, optionally,
ClinicalData. `read_odm` turns it into a `ProjectDesign` plus flat data rows.
Pseudo-fields REDCap writes as items (`redcap_data_access_group`, `redcap_survey_identifier`,
`<form>_timestamp`) are not fields; calculated values in ClinicalData are not stored (REDCap
recalculates them); user roles, surveys and DAGs in GlobalVariables are kept.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from .checks import DesignError, check_design
from .design import NOT_IMPORTABLE, ArmDef, EventDef, FieldDef, ProjectDesign
from .formats import ImportFormatError, parse_xml
from .rights import RIGHT_FLAGS, RightsError, fit_to_forms, parse_form_rights
from .values import VALIDATION_ALIASES

REDCAP_NS = "https://projectredcap.org"
# REDCap's internal field types (used in ODM) -> data dictionary names
FIELD_TYPE_NAMES = {"select": "dropdown", "textarea": "notes"}
# ODM DataType -> (field type, validation) when an item has no REDCap field type
ODM_TYPES = {"float": ("text", "number"), "integer": ("text", "integer"),
             "date": ("text", "date_ymd"), "datetime": ("text", "datetime_seconds_ymd"),
             "partialDatetime": ("text", "datetime_ymd"), "boolean": ("truefalse", "")}
ATTR_COLUMNS = {"redcap:FieldNote": "field_note", "redcap:Identifier": "identifier",
                "redcap:BranchingLogic": "branching_logic", "redcap:RequiredField": "required_field",
                "redcap:CustomAlignment": "custom_alignment",
                "redcap:QuestionNumber": "question_number",
                "redcap:MatrixGroupName": "matrix_group_name", "redcap:MatrixRanking": "matrix_ranking",
                "redcap:FieldAnnotation": "field_annotation", "redcap:Calculation": "calc"}


@dataclass
class OdmProject:
    title: str
    design: ProjectDesign
    settings: dict[str, object] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attrs(el: ET.Element) -> dict[str, str]:
    """Attributes with the REDCap namespace written as `redcap:Name`, others bare."""
    out: dict[str, str] = {}
    for key, value in el.attrib.items():
        if key.startswith("{" + REDCAP_NS + "}"):
            out["redcap:" + _local(key)] = value
        else:
            out[_local(key)] = value
    return out


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _first(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el.iter() if _local(c.tag) == name), None)


def _text_of(el: ET.Element | None, name: str) -> str:
    found = _first(el, name) if el is not None else None
    return (found.text or "").strip() if found is not None else ""


def read_odm(text: str) -> OdmProject:
    """Parse a REDCap project XML; raise DesignError when it is not one REDCap would accept."""
    try:
        return _read_odm(text)
    except DesignError:
        raise
    except KeyError as err:
        raise DesignError([f"The project XML lacks a required attribute: {err.args[0]}"]) from None
    except ValueError as err:
        raise DesignError([f"The project XML holds a value REDCap would refuse: {err}"]) from None


def _read_odm(text: str) -> OdmProject:
    try:
        root = parse_xml(text)
    except ImportFormatError as err:
        raise DesignError([str(err)]) from None
    study = _first(root, "Study")
    mdv = _first(root, "MetaDataVersion")
    if _local(root.tag) != "ODM" or study is None or mdv is None:
        raise DesignError(["The file is not a REDCap project XML (no ODM Study/MetaDataVersion)."])
    globals_ = _first(study, "GlobalVariables")
    design = ProjectDesign(fields=[])
    _read_events(mdv, design)
    _read_fields(mdv, design)
    _read_repeating_and_dags(globals_, design)
    if not design.longitudinal:
        design.mapping = {}
    check_design(design)
    return OdmProject(
        title=_text_of(globals_, "StudyName") or _attrs(mdv).get("Name", "Imported project"),
        design=design, settings=_settings(globals_), rows=_clinical_rows(root, design))


def _settings(globals_: ET.Element | None) -> dict[str, object]:
    tags = {"RecordAutonumberingEnabled": "record_autonumbering_enabled", "Purpose": "purpose",
            "PurposeOther": "purpose_other", "ProjectNotes": "project_notes",
            "SurveyInvitationEmailField": "survey_email_field"}
    out: dict[str, object] = {}
    for el in globals_.iter() if globals_ is not None else []:
        key = tags.get(_local(el.tag))
        if key and (el.text or "").strip():
            value = el.text.strip() if el.text else ""
            out[key] = int(value) if value.isdigit() else value
    return out


def _read_events(mdv: ET.Element, design: ProjectDesign) -> None:
    protocol = _first(mdv, "Protocol")
    refs = [_attrs(r)["StudyEventOID"] for r in _children(protocol, "StudyEventRef")] if (
        protocol is not None) else []
    defs = {_attrs(d)["OID"]: d for d in _children(mdv, "StudyEventDef")}
    arms: dict[int, str] = {}
    for oid in refs:
        el = defs.get(oid)
        if el is None:
            raise DesignError([f"(event) StudyEventRef {oid} has no StudyEventDef"])
        a = _attrs(el)
        arm = int(a.get("redcap:ArmNum", "1") or 1)
        arms.setdefault(arm, a.get("redcap:ArmName", f"Arm {arm}"))
        unique = a.get("redcap:UniqueEventName") or oid.removeprefix("Event.")
        design.events.append(EventDef(
            event_name=a.get("redcap:EventName") or a.get("Name", unique), arm_num=arm,
            unique_event_name=unique, day_offset=_int(a.get("redcap:DayOffset")),
            offset_min=_int(a.get("redcap:OffsetMin")), offset_max=_int(a.get("redcap:OffsetMax")),
            custom_event_label=a.get("redcap:CustomEventLabel", ""), event_id=len(design.events) + 1))
        design.mapping[unique] = [
            _attrs(f).get("redcap:FormName") or _attrs(f)["FormOID"].removeprefix("Form.")
            for f in _children(el, "FormRef")]
    design.arms = [ArmDef(n, name) for n, name in sorted(arms.items())]


def _int(raw: str | None) -> int:
    try:
        return int(float(raw or 0))
    except ValueError:
        return 0


def _read_fields(mdv: ET.Element, design: ProjectDesign) -> None:
    group_form: dict[str, str] = {}
    for form_el in _children(mdv, "FormDef"):
        a = _attrs(form_el)
        form = a.get("redcap:FormName") or a["OID"].removeprefix("Form.")
        design.form_labels[form] = a.get("Name", "")
        for ref in _children(form_el, "ItemGroupRef"):
            group_form[_attrs(ref)["ItemGroupOID"]] = form
    items = {_attrs(i)["OID"]: i for i in _children(mdv, "ItemDef")}
    pseudo = pseudo_fields(group_form.values())
    code_lists = {_attrs(c)["OID"]: c for c in _children(mdv, "CodeList")}
    seen: set[str] = set()
    for group in _children(mdv, "ItemGroupDef"):
        g = _attrs(group)
        if g["OID"] not in group_form:
            continue
        form = group_form[g["OID"]]
        for ref in _children(group, "ItemRef"):
            r = _attrs(ref)
            var = r.get("redcap:Variable") or r["ItemOID"]
            if var == f"{form}_complete" or (
                    var in seen and r["ItemOID"].startswith(var + "___")):
                continue  # the form status, or a further choice of a checkbox
            item = items.get(r["ItemOID"])
            if var in pseudo and (item is None or "redcap:FieldType" not in _attrs(item)):
                continue  # DAG, survey identifier and survey timestamps: not fields
            seen.add(var)
            if item is None:
                raise DesignError([f"({var}) ItemRef without an ItemDef"])
            header = g.get("Name", "") if g["OID"] == f"{form}.{r['ItemOID']}" else ""
            design.fields.append(_field(item, var, form, header, r.get("Mandatory") == "Yes",
                                        code_lists))


def pseudo_fields(forms: Iterable[str]) -> set[str]:
    """What REDCap writes as items without being fields: the record's DAG, the survey
    identifier and each survey's completion timestamp."""
    return {"redcap_data_access_group", "redcap_survey_identifier",
            *(f"{form}_timestamp" for form in forms)}


def _field(item: ET.Element, var: str, form: str, group_header: str, mandatory: bool,
           code_lists: dict[str, ET.Element]) -> FieldDef:
    a = _attrs(item)
    ftype, validation = ODM_TYPES.get(a.get("DataType", "text"), ("text", ""))
    if "redcap:FieldType" in a:
        ftype = FIELD_TYPE_NAMES.get(a["redcap:FieldType"], a["redcap:FieldType"])
        validation = a.get("redcap:TextValidationType", "")
        group_header = a.get("redcap:SectionHeader", "")
    validation = VALIDATION_ALIASES.get(validation, validation)
    cols = {col: a[attr] for attr, col in ATTR_COLUMNS.items() if attr in a}
    choices = cols.pop("calc", "")
    ref = _first(item, "CodeListRef")
    if ref is not None and ftype not in ("yesno", "truefalse"):
        choices = _choices(code_lists.get(_attrs(ref)["CodeListOID"]))
        if ftype not in ("radio", "dropdown", "checkbox") and "redcap:FieldType" not in a:
            ftype = "dropdown"
    question = _first(item, "Question")
    label = _text_of(question, "FormattedTranslatedText") or _text_of(question, "TranslatedText")
    bounds = {"text_validation_min": "", "text_validation_max": ""}
    for check in (c for c in item if _local(c.tag) == "RangeCheck"):
        side = "text_validation_min" if _attrs(check).get("Comparator") in ("GE", "GT") else (
            "text_validation_max")
        bounds[side] = _text_of(check, "CheckValue")
    if mandatory:
        cols.setdefault("required_field", "y")
    return FieldDef(field_name=var, form_name=form, field_type=ftype, field_label=label,
                    section_header=group_header, select_choices_or_calculations=choices,
                    text_validation_type_or_show_slider_number=validation, **bounds, **cols)


def _choices(code_list: ET.Element | None) -> str:
    if code_list is None:
        return ""
    a = _attrs(code_list)
    if "redcap:CheckboxChoices" in a:
        return a["redcap:CheckboxChoices"]
    return " | ".join(f"{_attrs(i)['CodedValue']}, {_text_of(i, 'TranslatedText')}"
                      for i in _children(code_list, "CodeListItem"))


def _read_repeating_and_dags(globals_: ET.Element | None, design: ProjectDesign) -> None:
    if globals_ is None:
        return
    classic = design.event_names()[0]
    for el in globals_.iter():
        a, name = _attrs(el), _local(el.tag)
        if name == "RepeatingInstrument":
            event = a.get("redcap:UniqueEventName") if design.longitudinal else classic
            design.repeating.setdefault(event or classic, {})[a.get("redcap:RepeatInstrument", "")] = (
                a.get("redcap:CustomLabel", ""))
        elif name == "RepeatingEvent":
            design.repeating.setdefault(a.get("redcap:UniqueEventName", ""), {})[""] = ""
        elif name == "DataAccessGroups":
            label = a.get("redcap:group_name") or a.get("group_name") or (el.text or "").strip()
            unique = a.get("redcap:unique_group_name") or a.get("unique_group_name")
            if label and unique:
                design.dags[unique] = label
            elif label:
                design.add_dag(label)
        elif name == "UserRoles":
            _read_role(a, design)
        elif name == "Surveys" and a.get("form_name"):
            design.surveys[a["form_name"]] = {k: v for k, v in a.items() if k != "form_name"}


def _read_role(a: dict[str, str], design: ProjectDesign) -> None:
    """`<redcap:UserRoles role_name=.. unique_role_name=.. data_entry="[form,1]..."
    data_export_instruments="[form,1]..." design="0" .../>`."""
    forms = design.forms
    rights: dict[str, object] = {flag: int(a[flag]) for flag in RIGHT_FLAGS
                                 if a.get(flag, "").isdigit()}
    for attr, column in (("data_entry", "forms"), ("data_export_instruments", "forms_export")):
        pairs = [p.split(",", 1) for p in a.get(attr, "").strip("[]").split("][") if "," in p]
        try:
            rights[column] = parse_form_rights({f: v for f, v in pairs}, forms, column)
        except RightsError as err:
            raise DesignError([f"(user role {a.get('role_name', '')}) {err}"]) from None
    name = a.get("unique_role_name") or f"U-{len(design.roles) + 1:010d}"
    design.roles[name] = {"role_label": a.get("role_name", ""), **fit_to_forms(rights, forms)}


def _clinical_rows(root: ET.Element, design: ProjectDesign) -> list[dict[str, str]]:
    """ClinicalData as flat import rows (record, event, repeating instrument, instance, values)."""
    rows: dict[tuple[str, str, str, str], dict[str, str]] = {}
    classic = design.event_names()[0]
    # values REDCap exports but never imports: calculations, files, survey pseudo-fields
    skipped = {n for f in design.fields if f.field_type in NOT_IMPORTABLE
               for n in f.export_names() or [f.field_name]}
    skipped |= pseudo_fields(design.forms) - {"redcap_data_access_group"}
    for subject in (e for e in root.iter() if _local(e.tag) == "SubjectData"):
        record = _attrs(subject).get("SubjectKey", "")
        dag = _attrs(subject).get("redcap:DataAccessGroup", "")
        event_els = _children(subject, "StudyEventData") or [subject]
        for ev in event_els:
            ea = _attrs(ev)
            event = ea.get("redcap:UniqueEventName") or ea.get(
                "StudyEventOID", "").removeprefix("Event.") or classic
            for form_el in _children(ev, "FormData"):
                fa = _attrs(form_el)
                form = fa.get("FormOID", "").removeprefix("Form.")
                if design.is_repeating_form(event, form):
                    ri, inst = form, fa.get("FormRepeatKey", "1")
                elif design.is_repeating_event(event):
                    ri, inst = "", ea.get("StudyEventRepeatKey", "1")
                else:
                    ri, inst = "", ""
                row = rows.setdefault((record, event, ri, inst), _row_head(design, record, event, ri, inst))
                for item in (i for i in form_el.iter() if _local(i.tag) == "ItemData"):
                    ia = _attrs(item)
                    name, value = ia.get("ItemOID", ""), ia.get("Value", "")
                    if name == "redcap_data_access_group":
                        row[name] = value
                    elif name not in skipped:
                        row[name] = value
            if dag:
                for key, row in rows.items():
                    if key[0] == record:
                        row.setdefault("redcap_data_access_group", dag)
    return list(rows.values())


def _row_head(design: ProjectDesign, record: str, event: str, ri: str, inst: str) -> dict[str, str]:
    row = {design.record_id_field: record}
    if design.longitudinal:
        row["redcap_event_name"] = event
    if ri or inst:
        row["redcap_repeat_instrument"] = ri
        row["redcap_repeat_instance"] = inst
    return row
