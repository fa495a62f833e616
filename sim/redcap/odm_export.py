"""Writing a project as REDCap project XML (CDISC ODM 1.3.1 + REDCap vendor extensions).

The inverse of `odm.read_odm`: what `content=project_xml` returns and what REDCap's
"Download project XML" produces, so an emulated project can be re-created elsewhere.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from .design import FORM_STATUS, FieldDef, ProjectDesign
from .layout import complete_field, form_applies
from .rights import RIGHT_FLAGS
from .store import RowKey
from .values import base_validation

HEAD = ('<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:redcap="https://projectredcap.org" ODMVersion="1.3.1" FileType="Snapshot" '
        'SourceSystem="REDCap" SourceSystemVersion={version} CreationDateTime={created} '
        'Description={title}>\n')
# dictionary validation name -> REDCap's internal name written in ODM
INTERNAL_VALIDATION = {"integer": "int", "number": "float"}
INTERNAL_TYPE = {"dropdown": "select", "notes": "textarea"}
OPTIONAL_ATTRS = (("field_note", "FieldNote"), ("section_header", "SectionHeader"),
                  ("identifier", "Identifier"), ("required_field", "RequiredField"),
                  ("matrix_ranking", "MatrixRanking"), ("branching_logic", "BranchingLogic"),
                  ("custom_alignment", "CustomAlignment"), ("question_number", "QuestionNumber"),
                  ("matrix_group_name", "MatrixGroupName"), ("field_annotation", "FieldAnnotation"))


def _a(value: object) -> str:
    return quoteattr(str(value))


def _e(text: str) -> str:
    return quoteattr(text)[1:-1]


def study_oid(title: str) -> str:
    return "Project." + "".join(w.capitalize() for w in
                                "".join(c for c in title if c.isalnum() or c == " ").split())[:30]


def project_xml(title: str, design: ProjectDesign, settings: dict[str, object], *, version: str,
                created: str, data: dict[RowKey, dict[str, str]] | None = None,
                dags: dict[str, str] | None = None) -> str:
    oid = study_oid(title)
    out = [HEAD.format(version=_a(version), created=_a(created.replace(" ", "T")), title=_a(title)),
           f"<Study OID={_a(oid)}>\n", _global_variables(title, design, settings),
           f"<MetaDataVersion OID={_a('Metadata.' + oid[8:])} Name={_a(title)} "
           f"redcap:RecordIdField={_a(design.record_id_field)}>\n"]
    out += _events(design)
    out += _forms_groups_items(design)
    out.append("</MetaDataVersion>\n</Study>\n")
    if data is not None:
        out.append(_clinical_data(oid, design, data, dags or {}))
    out.append("</ODM>\n")
    return "".join(out)


def _global_variables(title: str, design: ProjectDesign, settings: dict[str, object]) -> str:
    parts = [f"\t<StudyName>{_e(title)}</StudyName>\n",
             f"\t<StudyDescription>This file contains the metadata, events, and data for REDCap "
             f"project \"{_e(title)}\".</StudyDescription>\n",
             f"\t<ProtocolName>{_e(title)}</ProtocolName>\n"]
    for tag, key in (("RecordAutonumberingEnabled", "record_autonumbering_enabled"),
                     ("Purpose", "purpose"), ("PurposeOther", "purpose_other"),
                     ("ProjectNotes", "project_notes"),
                     ("SurveyInvitationEmailField", "survey_email_field")):
        parts.append(f"\t<redcap:{tag}>{_e(str(settings.get(key, '')))}</redcap:{tag}>\n")
    parts.append(f"\t<redcap:SurveysEnabled>{int(bool(design.surveys))}</redcap:SurveysEnabled>\n")
    if design.has_repeating():
        parts.append("\t<redcap:RepeatingInstrumentsAndEvents>\n")
        for event, forms in design.repeating.items():
            if "" in forms:
                parts.append(f"\t\t<redcap:RepeatingEvent redcap:UniqueEventName={_a(event)}/>\n")
                continue
            parts.append("\t\t<redcap:RepeatingInstruments>\n")
            parts += [f"\t\t\t<redcap:RepeatingInstrument redcap:UniqueEventName={_a(event)} "
                      f"redcap:RepeatInstrument={_a(form)} redcap:CustomLabel={_a(label)}/>\n"
                      for form, label in forms.items()]
            parts.append("\t\t</redcap:RepeatingInstruments>\n")
        parts.append("\t</redcap:RepeatingInstrumentsAndEvents>\n")
    if design.dags:
        parts.append("\t<redcap:DataAccessGroupsGroup>\n")
        parts += [f"\t\t<redcap:DataAccessGroups group_name={_a(label)} "
                  f"unique_group_name={_a(unique)}/>\n" for unique, label in design.dags.items()]
        parts.append("\t</redcap:DataAccessGroupsGroup>\n")
    parts += _roles(design) + _surveys(design)
    return "<GlobalVariables>\n" + "".join(parts) + "</GlobalVariables>\n"


def _form_rights(rights: dict[str, int]) -> str:
    return "".join(f"[{form},{right}]" for form, right in rights.items())


def _roles(design: ProjectDesign) -> list[str]:
    if not design.roles:
        return []
    out = ["\t<redcap:UserRolesGroup>\n"]
    for name, role in design.roles.items():
        flags = "".join(f" {flag}={_a(role.get(flag, 0))}" for flag in RIGHT_FLAGS)
        out.append(f"\t\t<redcap:UserRoles role_name={_a(role.get('role_label', ''))} "
                   f"unique_role_name={_a(name)}{flags} "
                   f"data_entry={_a(_form_rights(role.get('forms', {})))} "
                   f"data_export_instruments={_a(_form_rights(role.get('forms_export', {})))}/>\n")
    out.append("\t</redcap:UserRolesGroup>\n")
    return out


def _surveys(design: ProjectDesign) -> list[str]:
    if not design.surveys:
        return []
    out = ["\t<redcap:SurveysGroup>\n"]
    for form, settings in design.surveys.items():
        attrs = "".join(f" {k}={_a(v)}" for k, v in settings.items())
        out.append(f"\t\t<redcap:Surveys form_name={_a(form)}{attrs}/>\n")
    out.append("\t</redcap:SurveysGroup>\n")
    return out


def _pseudo_items(design: ProjectDesign, form: str) -> list[str]:
    """Items REDCap lists on a form without them being fields (see `odm.pseudo_fields`)."""
    names = []
    if form == design.forms[0] and design.dags:
        names.append("redcap_data_access_group")
    if form == design.forms[0] and design.surveys:
        names.append("redcap_survey_identifier")
    if form in design.surveys:
        names.append(f"{form}_timestamp")
    return names


def _pseudo_item_def(name: str) -> str:
    kind = "datetime" if name.endswith("_timestamp") else "text"
    return (f"\t<ItemDef OID={_a(name)} Name={_a(name)} DataType=\"{kind}\" Length=\"999\" "
            f"redcap:Variable={_a(name)}>\n\t\t<Question><TranslatedText>{_e(name)}"
            "</TranslatedText></Question>\n\t</ItemDef>\n")


def _events(design: ProjectDesign) -> list[str]:
    if not design.longitudinal:
        return []
    arms = {a.arm_num: a.name for a in design.arms}
    out = ["\t<Protocol>\n"]
    out += [f"\t\t<StudyEventRef StudyEventOID={_a('Event.' + e.unique_event_name)} "
            f'OrderNumber="{i}" Mandatory="No"/>\n' for i, e in enumerate(design.events, 1)]
    out.append("\t</Protocol>\n")
    for e in design.events:
        out.append(
            f"\t<StudyEventDef OID={_a('Event.' + e.unique_event_name)} Name={_a(e.event_name)} "
            f'Type="Common" Repeating="No" redcap:EventName={_a(e.event_name)} '
            f"redcap:CustomEventLabel={_a(e.custom_event_label)} "
            f"redcap:UniqueEventName={_a(e.unique_event_name)} redcap:ArmNum=\"{e.arm_num}\" "
            f"redcap:ArmName={_a(arms.get(e.arm_num, ''))} redcap:DayOffset=\"{e.day_offset}\" "
            f"redcap:OffsetMin=\"{e.offset_min}\" redcap:OffsetMax=\"{e.offset_max}\">\n")
        out += [f"\t\t<FormRef FormOID={_a('Form.' + f)} OrderNumber=\"{i}\" Mandatory=\"No\" "
                f"redcap:FormName={_a(f)}/>\n"
                for i, f in enumerate(design.mapping.get(e.unique_event_name, []), 1)]
        out.append("\t</StudyEventDef>\n")
    return out


def _groups(design: ProjectDesign, form: str) -> list[tuple[str, str, list[FieldDef]]]:
    """(group OID, group name, fields): a new group at each section header, like REDCap."""
    groups: list[tuple[str, str, list[FieldDef]]] = []
    for f in design.fields_of(form):
        if not groups or f.section_header:
            groups.append((f"{form}.{f.field_name}", f.section_header or design.form_label(form), []))
        groups[-1][2].append(f)
    return groups


def _forms_groups_items(design: ProjectDesign) -> list[str]:
    forms, groups, items, lists = [], [], [], []
    for form in design.forms:
        status = complete_field(form)
        form_groups = [*_groups(design, form), (f"{form}.{status}", "Form Status", [])]
        forms.append(f"\t<FormDef OID={_a('Form.' + form)} Name={_a(design.form_label(form))} "
                     f'Repeating="No" redcap:FormName={_a(form)}>\n' + "".join(
                         f"\t\t<ItemGroupRef ItemGroupOID={_a(g)} Mandatory=\"No\"/>\n"
                         for g, _, _ in form_groups) + "\t</FormDef>\n")
        pseudo = _pseudo_items(design, form)
        items += [_pseudo_item_def(n) for n in pseudo]
        for oid, name, fields in form_groups:
            refs: list[tuple[str, FieldDef | None]] = [
                (n, f) for f in fields for n in _item_names(f)] or [(status, None)]
            head = "".join(f"\t\t<ItemRef ItemOID={_a(n)} Mandatory=\"No\" redcap:Variable={_a(n)}/>\n"
                           for n in pseudo)
            pseudo = []
            opening = f"\t<ItemGroupDef OID={_a(oid)} Name={_a(name)} Repeating=\"No\">\n"
            groups.append(opening + head + "".join(
                f"\t\t<ItemRef ItemOID={_a(n)} Mandatory={_a('Yes' if f and f.required_field else 'No')}"
                f" redcap:Variable={_a(f.field_name if f else n)}/>\n" for n, f in refs)
                + "\t</ItemGroupDef>\n")
            for n, f in refs:
                items.append(_item_def(n, f) if f else _status_item(n))
                lists.append(_code_list(n, f) if f else _status_list(n))
    return forms + groups + items + [c for c in lists if c]


def _item_names(f: FieldDef) -> list[str]:
    return f.export_names() or [f.field_name]


def _data_type(f: FieldDef) -> str:
    if f.field_type in ("checkbox", "yesno", "truefalse"):
        return "boolean"
    if f.field_type in ("calc",):
        return "float"
    if f.field_type == "slider":
        return "integer"
    kind = base_validation(f.validation) if f.field_type == "text" else ""
    return {"integer": "integer", "number": "float", "date": "date", "datetime": "partialDatetime",
            "datetime_seconds": "datetime", "time": "partialTime"}.get(kind, "text")


def _item_def(name: str, f: FieldDef) -> str:
    length = 1 if f.field_type == "checkbox" else (
        max((len(c) for c, _ in f.choices), default=1) if f.choices else 999)
    attrs = (f"DataType=\"{_data_type(f)}\" Length=\"{length}\" redcap:Variable={_a(f.field_name)} "
             f"redcap:FieldType={_a(INTERNAL_TYPE.get(f.field_type, f.field_type))}")
    if f.validation and f.field_type == "text":
        attrs += f" redcap:TextValidationType={_a(INTERNAL_VALIDATION.get(f.validation, f.validation))}"
    if f.field_type == "calc":
        attrs += f" redcap:Calculation={_a(f.select_choices_or_calculations)}"
    attrs += "".join(f" redcap:{tag}={_a(getattr(f, col))}" for col, tag in OPTIONAL_ATTRS
                     if getattr(f, col))
    body = f"\t\t<Question><TranslatedText>{_e(f.field_label)}</TranslatedText></Question>\n"
    if f.choices:
        body += f"\t\t<CodeListRef CodeListOID={_a(name + '.choices')}/>\n"
    for side, comparator in (("text_validation_min", "GE"), ("text_validation_max", "LE")):
        if getattr(f, side) and f.validation:
            body += (f"\t\t<RangeCheck Comparator=\"{comparator}\" SoftHard=\"Soft\">"
                     f"<CheckValue>{_e(getattr(f, side))}</CheckValue></RangeCheck>\n")
    return f"\t<ItemDef OID={_a(name)} Name={_a(name)} {attrs}>\n{body}\t</ItemDef>\n"


def _code_list(name: str, f: FieldDef) -> str:
    if not f.choices:
        return ""
    extra = ""
    choices = f.choices
    if f.field_type == "checkbox":
        extra = f" redcap:CheckboxChoices={_a(f.select_choices_or_calculations)}"
        choices = (("1", "Checked"), ("0", "Unchecked"))
    items = "".join(f"\t\t<CodeListItem CodedValue={_a(c)}><Decode><TranslatedText>{_e(label)}"
                    "</TranslatedText></Decode></CodeListItem>\n" for c, label in choices)
    return (f"\t<CodeList OID={_a(name + '.choices')} Name={_a(name)} DataType=\"{_data_type(f)}\" "
            f"redcap:Variable={_a(f.field_name)}{extra}>\n{items}\t</CodeList>\n")


def _status_item(name: str) -> str:
    return (f"\t<ItemDef OID={_a(name)} Name={_a(name)} DataType=\"text\" Length=\"1\" "
            f"redcap:Variable={_a(name)} redcap:FieldType=\"select\" redcap:SectionHeader=\"Form Status\">\n"
            f"\t\t<Question><TranslatedText>Complete?</TranslatedText></Question>\n"
            f"\t\t<CodeListRef CodeListOID={_a(name + '.choices')}/>\n\t</ItemDef>\n")


def _status_list(name: str) -> str:
    items = "".join(f"\t\t<CodeListItem CodedValue=\"{c}\"><Decode><TranslatedText>{label}"
                    "</TranslatedText></Decode></CodeListItem>\n" for c, label in FORM_STATUS)
    return (f"\t<CodeList OID={_a(name + '.choices')} Name={_a(name)} DataType=\"text\" "
            f"redcap:Variable={_a(name)}>\n{items}\t</CodeList>\n")


def _clinical_data(oid: str, design: ProjectDesign, data: dict[RowKey, dict[str, str]],
                   dags: dict[str, str]) -> str:
    out = [f"<ClinicalData StudyOID={_a(oid)} MetaDataVersionOID={_a('Metadata.' + oid[8:])}>\n"]
    records = sorted({k[0] for k in data})
    for record in records:
        dag = f" redcap:DataAccessGroup={_a(dags[record])}" if dags.get(record) else ""
        out.append(f"\t<SubjectData SubjectKey={_a(record)} "
                   f"redcap:RecordIdField={_a(design.record_id_field)}{dag}>\n")
        for key in sorted(k for k in data if k[0] == record):
            out += _event_data(design, key, data[key])
        out.append("\t</SubjectData>\n")
    out.append("</ClinicalData>\n")
    return "".join(out)


def _event_data(design: ProjectDesign, key: RowKey, stored: dict[str, str]) -> list[str]:
    _, event, ri, instance = key
    out: list[str] = []
    for form in design.forms:
        if not form_applies(design, form, event, ri):
            continue
        names = [n for f in design.fields_of(form) for n in f.export_names()] + [complete_field(form)]
        values = [(n, stored[n]) for n in names if stored.get(n)]
        if not values:
            continue
        out.append(f"\t\t\t<FormData FormOID={_a('Form.' + form)} FormRepeatKey=\"{instance}\">\n"
                   f"\t\t\t\t<ItemGroupData ItemGroupOID={_a(form + '.' + names[0])} "
                   "ItemGroupRepeatKey=\"1\">\n" + "".join(
                       f"\t\t\t\t\t<ItemData ItemOID={_a(n)} Value={_a(v)}/>\n" for n, v in values)
                   + "\t\t\t\t</ItemGroupData>\n\t\t\t</FormData>\n")
    if not out or not design.longitudinal:
        return out
    repeat = instance if design.is_repeating_event(event) else 1
    return [f"\t\t<StudyEventData StudyEventOID={_a('Event.' + event)} StudyEventRepeatKey=\"{repeat}\" "
            f"redcap:UniqueEventName={_a(event)}>\n", *out, "\t\t</StudyEventData>\n"]
