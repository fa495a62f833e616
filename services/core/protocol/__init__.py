"""The trial protocol file, validated at start-up.

`load_protocol(path)` returns a `TrialProtocol` or raises `ProtocolError` whose
message names every wrong key as a dotted path (e.g. `clusters[1].matching_module`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from .allocation import ActiveModel, AllocationRules
from .base import Strict
from .notifications import DiaryPolicy, QuietHours, ReminderPolicy, ReminderStep
from .randomization import (
    ArmRule,
    Factor,
    GroupRandomization,
    Minimization,
    ModuleWeights,
    RandomizationDesign,
    ResponseRule,
    SiteSource,
    Stage,
    StageOption,
)
from .redcap import RedcapFields, RedcapProject
from .reports import Criterion, RecruitmentPlan, ReportsRules, Threshold, WithdrawalFields
from .retention import DataRetention
from .safety import ClockCondition, Contact, ReportingRule, SafetyRules
from .trial import Arm, Cluster, Eligibility, EligibilityCriterion, Module, Timepoint, TrialInfo

__all__ = [
    "ActiveModel",
    "AllocationRules",
    "Arm",
    "ArmRule",
    "ClockCondition",
    "Cluster",
    "Contact",
    "Criterion",
    "DataRetention",
    "DiaryPolicy",
    "Eligibility",
    "EligibilityCriterion",
    "Factor",
    "GroupRandomization",
    "Minimization",
    "Module",
    "ModuleWeights",
    "ProtocolError",
    "QuietHours",
    "RandomizationDesign",
    "RecruitmentPlan",
    "RedcapFields",
    "RedcapProject",
    "ReminderPolicy",
    "ReminderStep",
    "ReportingRule",
    "ReportsRules",
    "ResponseRule",
    "SafetyRules",
    "SiteSource",
    "Stage",
    "StageOption",
    "Threshold",
    "Timepoint",
    "TrialInfo",
    "TrialProtocol",
    "WithdrawalFields",
    "load_protocol",
]


class ProtocolError(ValueError):
    """The protocol file is missing, unreadable or wrong; the message names the key."""


class TrialProtocol(Strict):
    trial: TrialInfo
    arms: list[Arm] = Field(min_length=2)
    modules: list[Module] = Field(default_factory=list)
    # The predicted clusters: only a personalized design (randomization.module_weights) has
    # them.
    clusters: list[Cluster] = Field(default_factory=list)
    timepoints: list[Timepoint] = Field(min_length=1)
    randomization: RandomizationDesign
    # The prediction step (the allocation service): present exactly when the design is
    # personalized; other designs randomize without it.
    allocation: AllocationRules | None = None
    reminders: ReminderPolicy
    # Only a trial with a smartphone diary module has it.
    diary: DiaryPolicy | None = None
    safety: SafetyRules
    redcap: RedcapProject
    data_retention: DataRetention = Field(default_factory=DataRetention)
    # Optional for the other services; the reports service refuses to start without it.
    reports: ReportsRules | None = None
    # The screening criteria as REDCap fields (optional: PerPAIN records eligibility only).
    eligibility: Eligibility | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> TrialProtocol:
        problems: list[str] = []
        for name, items in (("arms", self.arms), ("modules", self.modules),
                            ("clusters", self.clusters), ("timepoints", self.timepoints)):
            keys = [i.key for i in items]
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                problems.append(f"{name}: duplicate keys {dupes}")
        modules = {m.key for m in self.modules}
        arms = {a.key for a in self.arms}
        for i, c in enumerate(self.clusters):
            if c.matching_module not in modules:
                problems.append(
                    f"clusters[{i}].matching_module: {c.matching_module!r} is not a module "
                    f"(known: {sorted(modules)})")
        seen: set[str] = {"allocation", "consent"}
        for i, t in enumerate(self.timepoints):
            if t.anchor not in seen:
                problems.append(
                    f"timepoints[{i}].anchor: {t.anchor!r} is neither 'allocation', 'consent' "
                    "nor an earlier timepoint")
            seen.add(t.key)
            problems += _survey_problems(i, t)
        problems += self._design_references(arms, modules)
        clusters = [c.key for c in self.clusters]
        if self.allocation is None and self.randomization.personalized:
            problems.append("allocation: a personalized design needs its prediction step")
        elif self.allocation is not None and not self.randomization.personalized:
            problems.append("allocation: only a personalized design (randomization."
                            "module_weights) has a prediction step")
        profiled = list(self.allocation.cluster_profiles) if self.allocation else clusters
        if sorted(profiled) != sorted(clusters):
            problems.append(
                f"allocation.cluster_profiles: names {sorted(profiled)}, but the clusters are "
                f"{sorted(clusters)} (training names each cluster by its profile)")
        if self.diary is not None and self.diary.module not in modules:
            problems.append(f"diary.module: {self.diary.module!r} is not a module")
        if self.diary is not None and self.diary.answer_event is not None:
            taken = {t.redcap_event: t.key for t in self.timepoints}
            if self.diary.answer_event in taken:
                problems.append(
                    f"diary.answer_event: {self.diary.answer_event!r} is the event of timepoint "
                    f"{taken[self.diary.answer_event]!r}; diary answers need an event of their own")
            forms = {f for t in self.timepoints for f in t.forms} | {
                self.redcap.withdrawal_form, self.redcap.adverse_event_form,
                self.redcap.allocation_form}
            if self.diary.answer_form in forms:
                problems.append(f"diary.answer_form: {self.diary.answer_form!r} is already "
                                "a form of the timepoints or the trial")
        if len(self.reminders.steps) > self.reminders.max_per_timepoint:
            problems.append(
                f"reminders.steps: {len(self.reminders.steps)} steps exceed "
                f"max_per_timepoint={self.reminders.max_per_timepoint}")
        problems += self._report_references()
        if self.eligibility is not None:
            fields = self.eligibility.fields
            dupes = sorted({f for f in fields if fields.count(f) > 1})
            if dupes:
                problems.append(f"eligibility: fields listed twice {dupes}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _design_references(self, arms: set[str], modules: set[str]) -> list[str]:
        """The randomization design against the arms, modules, clusters and timepoints."""
        r = self.randomization
        problems: list[str] = []
        for i, a in enumerate(self.arms):
            for j, m in enumerate(a.modules):
                if m not in modules:
                    problems.append(f"arms[{i}].modules[{j}]: {m!r} is not a module "
                                    f"(known: {sorted(modules)})")
        if r.module_weights is not None and r.arm_of is not None:
            if not self.clusters:
                problems.append("clusters: a personalized design needs the predicted clusters")
            if not self.modules:
                problems.append("modules: a personalized design needs the modules")
            for field in ("matching", "non_matching"):
                arm = getattr(r.arm_of, field)
                if arm not in arms:
                    problems.append(f"randomization.arm_of.{field}: {arm!r} is not an arm")
            unit = r.module_weights.matching + r.module_weights.non_matching * (
                len(self.modules) - 1)
            problems += self._blocks_fit("randomization.block_lengths", r.block_lengths, unit,
                                         "the sum of the module weights")
            odd = [a.key for a in self.arms if a.ratio != 1]
            if odd:
                problems.append(f"arms: {odd} declare a ratio, but a personalized design takes "
                                "its ratio from randomization.module_weights")
        else:
            if self.clusters:
                problems.append("clusters: only a personalized design (randomization."
                                "module_weights) has predicted clusters")
            if r.method in ("permuted_blocks", "group"):
                unit = sum(a.ratio for a in self.arms)
                problems += self._blocks_fit("randomization.block_lengths", r.block_lengths,
                                             unit, "the sum of the arms' ratios")
        known = [t.key for t in self.timepoints]
        for i, stage in enumerate(r.stages):
            if stage.timepoint not in known:
                problems.append(f"randomization.stages[{i}].timepoint: {stage.timepoint!r} is "
                                f"not a timepoint (known: {known})")
        return problems

    @staticmethod
    def _blocks_fit(where: str, lengths: list[int], unit: int, what: str) -> list[str]:
        return [f"{where}[{j}]: {b} is not a multiple of {unit}, {what}"
                for j, b in enumerate(lengths) if b % unit]

    def _report_references(self) -> list[str]:
        if self.reports is None:
            return []
        known = [t.key for t in self.timepoints]
        problems = [f"{where}: {tp!r} is not a timepoint (known: {known})"
                    for where, tp in self.reports.timepoint_references() if tp not in known]
        keys = [c.key for c in self.reports.feasibility]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            problems.append(f"reports.feasibility: duplicate keys {dupes}")
        return problems

    @property
    def prediction(self) -> AllocationRules:
        """The prediction step's rules; only a personalized protocol has them."""
        if self.allocation is None:
            raise ProtocolError("allocation: this protocol has no prediction step "
                                "(its design is not personalized)")
        return self.allocation

    @property
    def diary_policy(self) -> DiaryPolicy:
        if self.diary is None:
            raise ProtocolError("diary: this protocol has no diary module")
        return self.diary

    @property
    def diary_answers(self) -> tuple[str, str] | None:
        """(instrument, event key) where REDCap records diary answers; None without."""
        d = self.diary
        if d is None or d.answer_form is None or d.answer_event is None:
            return None
        return d.answer_form, d.answer_event

    @property
    def module_forms(self) -> list[str]:
        """REDCap instruments only one module's participants fill in (the diary's answers):
        their data show the module, so the blinding check treats them as the allocation."""
        answers = self.diary_answers
        return [answers[0]] if answers else []

    @cached_property
    def redcap_events(self) -> list[str]:
        """Every REDCap event of the project (keys, no arm suffix): the timepoints' and
        the diary answers' own."""
        events = [t.redcap_event for t in self.timepoints]
        answers = self.diary_answers
        return events + ([answers[1]] if answers and answers[1] not in events else [])

    # Lookups used everywhere; derived, never stored.
    @cached_property
    def cluster_by_key(self) -> dict[str, Cluster]:
        return {c.key: c for c in self.clusters}

    @cached_property
    def module_keys(self) -> list[str]:
        return [m.key for m in self.modules]

    @cached_property
    def timepoint_by_key(self) -> dict[str, Timepoint]:
        return {t.key: t for t in self.timepoints}


def _survey_problems(i: int, t: Timepoint) -> list[str]:
    """A survey is one of the timepoint's own forms (the REDCap project enables exactly
    these as surveys: protocols/<trial>/redcap/surveys.json is generated from them)."""
    problems = [f"timepoints[{i}].surveys: {s!r} is not one of this timepoint's forms "
                f"(forms: {t.forms})" for s in t.surveys if s not in t.forms]
    twice = sorted({s for s in t.surveys if t.surveys.count(s) > 1})
    if twice:
        problems.append(f"timepoints[{i}].surveys: {twice} named twice")
    return problems


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the protocol model)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_protocol(data: object, source: str = "<protocol>") -> TrialProtocol:
    try:
        return TrialProtocol.model_validate(data)
    except ValidationError as err:
        raise ProtocolError(f"{source} is not a valid trial protocol:\n{_describe(err)}") from None


def load_protocol(path: str | Path) -> TrialProtocol:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProtocolError(f"protocol file not found: {p}") from None
    except yaml.YAMLError as err:
        raise ProtocolError(f"{p} is not valid YAML: {err}") from None
    return parse_protocol(_paths_from(p.parent, data), str(p))


def _paths_from(folder: Path, data: object) -> object:
    """A protocol's relative file paths name files beside it, whatever the working folder
    (an installed package, a container, a ConfigMap mount)."""
    model = (data.get("allocation") or {}).get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and isinstance(model.get("path"), str):
        path = Path(model["path"])
        if not path.is_absolute():
            model["path"] = str((folder / path).resolve())
    return data
