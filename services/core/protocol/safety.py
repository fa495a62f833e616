"""Safety reporting rules: who must hear of which event by when.

Also the trial's negative-effects screening design (NEQ, INEP subscales) and the
names and codes of the REDCap adverse-event form, so no trial specific lives in code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict, iana_zone


class ClockCondition(Strict):
    """All given criteria must hold for a rule to apply (None = don't care)."""

    serious: bool | None = None
    related: bool | None = None
    unexpected: bool | None = None
    fatal_or_life_threatening: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ClockCondition:
        # A rule with no condition would start a clock for every mild headache.
        if all(v is None for v in self.model_dump().values()):
            raise ValueError("a reporting condition needs at least one criterion")
        return self


class ReportingRule(Strict):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: ClockCondition
    recipients: list[str] = Field(min_length=1)
    deadline_hours: int = Field(gt=0)
    restart_on_follow_up: bool = False
    description: str | None = None


class Contact(Strict):
    role: str
    name: str
    email: str


class InepDesign(Strict):
    """The INEP as this trial uses it.

    Bipolar items are answered −3 (much worse) … +3 (much better) and are stored in
    REDCap as codes 0…6 (value = code − `bipolar_code_offset`); unipolar items are
    0 (not at all) … 3. Subscales name the items the trial scores.
    """

    items: int = Field(gt=0)
    bipolar_items: list[int]
    unipolar_items: list[int]
    bipolar_code_offset: int = Field(default=3, ge=0)
    subscales: dict[str, list[int]] = Field(min_length=1)

    @model_validator(mode="after")
    def _items_cover_instrument(self) -> InepDesign:
        every = set(range(1, self.items + 1))
        bi, uni = set(self.bipolar_items), set(self.unipolar_items)
        if bi & uni:
            raise ValueError(f"items {sorted(bi & uni)} are both bipolar and unipolar")
        if bi | uni != every:
            raise ValueError(
                f"bipolar_items + unipolar_items must be exactly items 1..{self.items}; "
                f"missing {sorted(every - bi - uni)}, unknown {sorted((bi | uni) - every)}")
        for name, members in self.subscales.items():
            stray = sorted(set(members) - every)
            if stray or not members:
                raise ValueError(f"subscales.{name}: items {stray or '[]'} not in 1..{self.items}")
        return self


class AeFormFields(Strict):
    """REDCap field names of the `adverse_event` repeating instrument."""

    onset_date: str = "ae_onset_date"
    awareness_time: str = "ae_aware_datetime"
    verbatim_term: str = "ae_term"
    severity: str = "ae_severity"
    grade: str = "ae_grade"
    serious: str = "ae_serious"
    death: str = "ae_sc_death"
    life_threatening: str = "ae_sc_life_threat"
    hospitalisation: str = "ae_sc_hosp"
    disability: str = "ae_sc_disability"
    congenital_anomaly: str = "ae_sc_congenital"
    medically_important: str = "ae_sc_med_important"
    relatedness: str = "ae_related"
    expected: str = "ae_expected"
    outcome: str = "ae_outcome"
    action_taken: str = "ae_action"
    reporter: str = "ae_reporter"
    meddra_version: str = "ae_meddra_version"
    meddra_llt: str = "ae_meddra_llt"
    meddra_pt: str = "ae_meddra_pt"
    narrative: str = "ae_narrative"
    follow_up_reason: str = "ae_followup_reason"


class AeFormCodes(Strict):
    """REDCap choice code → domain value, per coded field of the AE form."""

    yes_no: dict[str, bool] = {"1": True, "0": False}
    severity: dict[str, Literal["mild", "moderate", "severe"]] = {
        "1": "mild", "2": "moderate", "3": "severe"}
    relatedness: dict[str, Literal["not", "unlikely", "possibly", "probably", "definitely"]] = {
        "1": "not", "2": "unlikely", "3": "possibly", "4": "probably", "5": "definitely"}
    # Codes follow ICH E2B(R3) E.i.7 so the export needs no second table.
    outcome: dict[str, Literal["recovered", "recovering", "not_recovered",
                               "recovered_with_sequelae", "fatal", "unknown"]] = {
        "1": "recovered", "2": "recovering", "3": "not_recovered",
        "4": "recovered_with_sequelae", "5": "fatal", "0": "unknown"}
    action_taken: dict[str, Literal["none", "treatment_modified", "treatment_interrupted",
                                    "treatment_discontinued", "unknown", "not_applicable"]] = {
        "1": "none", "2": "treatment_modified", "3": "treatment_interrupted",
        "4": "treatment_discontinued", "0": "unknown", "9": "not_applicable"}
    attribution: dict[str, Literal["treatment", "other"]] = {"1": "treatment", "2": "other"}


class AeForm(Strict):
    fields: AeFormFields = AeFormFields()
    codes: AeFormCodes = AeFormCodes()
    neq_prefix: str = Field(
        default="neq_",
        description="NEQ item n: {prefix}{n} occurred, {prefix}{n}_impact, {prefix}{n}_attr")
    inep_prefix: str = Field(
        default="inep_", description="INEP item n: {prefix}{n} value, {prefix}{n}_attr")
    neq_instrument: str = "neq"
    inep_instrument: str = "inep"
    site_timezone: str = Field(
        default="UTC", description="IANA zone of the site's REDCap wall-clock datetimes")

    _known_zone = field_validator("site_timezone")(lambda v: iana_zone(v))


class E2bExport(Strict):
    """Who sends the E2B(R3)-style case export and where from."""

    sender: str | None = Field(default=None, description="sender organisation; default trial.sponsor")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")
    intervention: str = Field(
        default="study intervention",
        description="G.k.2.2 when the participant's module is not known")


class SafetyRules(Strict):
    rules: list[ReportingRule] = Field(min_length=1)
    escalate_at_fraction: float = Field(gt=0, lt=1)
    related_levels: list[Literal["unlikely", "possibly", "probably", "definitely"]] = Field(
        min_length=1)
    expected_events: list[str] = Field(default_factory=list)
    neq_candidate_impact: int = Field(ge=0, le=4)
    neq_items: int = Field(default=32, gt=0)
    inep: InepDesign
    redcap_form: AeForm = AeForm()
    contacts: list[Contact] = Field(min_length=1)
    e2b: E2bExport | None = None

    @field_validator("rules")
    @classmethod
    def _unique_keys(cls, v: list[ReportingRule]) -> list[ReportingRule]:
        keys = [r.key for r in v]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate rule keys {dupes}")
        return v

    @model_validator(mode="after")
    def _recipients_are_contacts(self) -> SafetyRules:
        roles = {c.role for c in self.contacts}
        unknown = sorted({r for rule in self.rules for r in rule.recipients} - roles)
        if unknown:
            raise ValueError(
                f"rules: recipients {unknown} have no entry in contacts (known: {sorted(roles)})")
        return self
