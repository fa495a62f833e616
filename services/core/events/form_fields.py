"""Data minimisation of REDCap saves: which consumer receives which fields, from the protocol.

The gateway re-fetches a saved form's whole REDCap event row. Each consumer receives only
the saves and fields its rules read (DESIGN.md: contact details reach notifications only;
MPI-D answers, which with the module give the arm, reach allocation only):

- allocation: every save in the baseline event, with consent, eligibility, age, sex, the
  optional site and pilot fields, the MPI-D items and the baseline forms' completion; a
  save of the withdrawal form in any event. The withdrawal flag in both.
- notifications: every save, with the completion status of the timepoint forms of its
  event and the withdrawal flag (a diary answer: its instrument, instance and status
  only); in the baseline event also the contact fields (e-mail,
  mobile, postal address, language, time zone, contact opt-outs).
- safety: saves of the adverse-event, NEQ and INEP instruments, with that instrument's own
  fields only.
- reports (when the protocol has a reports section): every save but the diary's answers
  (their adherence comes counted from notifications), its completion status with
  screening, eligibility, consent, withdrawal (date, reason, preventable class), whether
  the allocated module was started, site,
  seriousness and the NEQ items with their attribution.
- randomization, only for a design without a prediction step (no allocation cut then): every
  save in the baseline event, with consent, eligibility, the withdrawal flag, the baseline
  forms' completion and the stratification fields (site, declared factors), and the group
  field under group randomization; with later stages (SMART) also each rule's baseline
  field and the saves in a stage's timepoint event (the rule's field, the timepoint forms'
  completion, the withdrawal flag); a save of the withdrawal form in any event, with the
  withdrawal flag only (as allocation's).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from ..protocol import TrialProtocol
from .gateway import FormSaved


def _cut(saved: FormSaved, keep: Callable[[str], bool]) -> FormSaved:
    return saved.model_copy(update={"fields": {k: v for k, v in saved.fields.items() if keep(k)}})


def _is_baseline(saved: FormSaved, protocol: TrialProtocol) -> bool:
    return protocol.redcap.event_key(saved.event) == protocol.redcap.baseline_event


def _names(*names: str | None) -> set[str]:
    return {n for n in names if n}


def for_allocation(saved: FormSaved, protocol: TrialProtocol) -> FormSaved | None:
    if protocol.allocation is None:  # no prediction step: the allocation service is not run
        return None
    r, f = protocol.redcap, protocol.redcap.fields
    baseline = _is_baseline(saved, protocol)
    if not baseline and saved.instrument != r.withdrawal_form:
        return None
    wanted = _names(f.withdrawn)
    if not baseline:
        return _cut(saved, wanted.__contains__)
    rules = protocol.allocation
    wanted |= _names(f.consent, f.eligible, f.age, f.sex,
                     rules.site_field if rules else None, rules.pilot_field if rules else None)
    wanted |= {f"{form}_complete" for form in r.baseline_forms}
    return _cut(saved, lambda k: k in wanted or k.startswith(f.mpid_item_prefix))


def for_notifications(saved: FormSaved, protocol: TrialProtocol) -> FormSaved:
    r, f = protocol.redcap, protocol.redcap.fields
    event = r.event_key(saved.event)
    wanted = _names(f.withdrawn)
    wanted |= {f"{form}_complete" for tp in protocol.timepoints if tp.redcap_event == event
               for form in tp.forms}
    opt_out = f"{f.contact_opt_out}___" if f.contact_opt_out else None
    if event == r.baseline_event:
        wanted |= _names(f.email, f.mobile, f.postal_address, f.language, f.timezone)
    else:
        opt_out = None
    return _cut(saved, lambda k: k in wanted or bool(opt_out and k.startswith(opt_out)))


def safety_instruments(protocol: TrialProtocol) -> set[str]:
    form = protocol.safety.redcap_form
    return _names(protocol.redcap.adverse_event_form, form.neq_instrument, form.inep_instrument)


def for_safety(saved: FormSaved, protocol: TrialProtocol,
               own_fields: Collection[str]) -> FormSaved | None:
    """`own_fields`: the instrument's fields from the data dictionary (checkbox fields
    arrive as `<field>___<code>`)."""
    if saved.instrument not in safety_instruments(protocol):
        return None
    own = set(own_fields) | {f"{saved.instrument}_complete"}
    return _cut(saved, lambda k: k in own or k.split("___", 1)[0] in own)


def reports_fields(protocol: TrialProtocol) -> frozenset[str]:
    """Every REDCap field the reports read model reads of a save."""
    f, form = protocol.redcap.fields, protocol.safety.redcap_form
    names = _names(f.eligible, f.consent, f.withdrawn, form.fields.serious, f.consent_date)
    r = protocol.reports
    if r is not None:
        names |= _names(r.screening_date_field, r.withdrawal.date, r.withdrawal.reason,
                        r.withdrawal.preventable, r.recruitment.site_field, r.received_field)
    for n in range(1, protocol.safety.neq_items + 1):
        names |= {f"{form.neq_prefix}{n}", f"{form.neq_prefix}{n}_attr"}
    return frozenset(names)


def _is_diary_answer(saved: FormSaved, protocol: TrialProtocol) -> bool:
    answers = protocol.diary_answers
    return answers is not None and saved.instrument == answers[0]


def for_reports(saved: FormSaved, protocol: TrialProtocol) -> FormSaved | None:
    if protocol.reports is None or _is_diary_answer(saved, protocol):
        return None  # diary adherence comes counted from notifications, which owns prompts
    wanted = reports_fields(protocol)
    if not _is_baseline(saved, protocol):  # screening and consent are baseline facts
        f = protocol.redcap.fields
        wanted -= _names(f.eligible, f.consent, f.consent_date,
                         protocol.reports.screening_date_field)
    return _cut(saved, wanted.__contains__)


def for_randomization(saved: FormSaved, protocol: TrialProtocol) -> FormSaved | None:
    """Baseline saves for a design without a prediction step (with one, the cluster comes
    from the allocation service instead), its withdrawal form in any event, and with later
    stages (SMART) the saves in each stage's timepoint event (the rule's field, the timepoint
    forms' completion)."""
    if protocol.randomization.personalized:
        return None
    r, f = protocol.redcap, protocol.redcap.fields
    stages = protocol.randomization.stages
    if not _is_baseline(saved, protocol):
        event = r.event_key(saved.event)
        withdrawal = _names(f.withdrawn)
        wanted = set(withdrawal)
        for stage in stages:
            tp = protocol.timepoint_by_key[stage.timepoint]
            if tp.redcap_event == event:
                wanted |= {stage.rule.field, *(f"{form}_complete" for form in tp.forms)}
        if wanted == withdrawal and saved.instrument != r.withdrawal_form:
            return None
        return _cut(saved, wanted.__contains__)
    wanted = _names(f.consent, f.eligible, f.withdrawn,
                    *(x.field for x in protocol.randomization.factors),
                    *(s.rule.baseline_field for s in stages))
    wanted |= {f"{form}_complete" for form in r.baseline_forms}
    if "site" in protocol.randomization.stratify_by:
        wanted.add(protocol.randomization.site.field or "redcap_data_access_group")
    if protocol.randomization.group is not None:  # group randomization: the member's group
        wanted.add(protocol.randomization.group.group_field)
    return _cut(saved, wanted.__contains__)


# Every service a form save may be sealed to, in the order the gateway publishes the cuts.
FORM_SAVE_CONSUMERS = ("allocation", "notifications", "safety", "reports", "randomization")


def per_consumer(saved: FormSaved, protocol: TrialProtocol,
                 own_fields: Iterable[str]) -> dict[str, FormSaved]:
    """The save as each consumer that needs it receives it (consumer → its cut)."""
    cuts = {"allocation": for_allocation(saved, protocol),
            "notifications": for_notifications(saved, protocol),
            "safety": for_safety(saved, protocol, list(own_fields)),
            "reports": for_reports(saved, protocol),
            "randomization": for_randomization(saved, protocol)}
    return {consumer: cut for consumer, cut in cuts.items() if cut is not None}


def form_save_consumers(protocol: TrialProtocol) -> list[str]:
    """The services this protocol's form saves are sealed to: allocation only with a
    prediction step, randomization only without one (see `for_allocation`, `for_randomization`).
    The gateway needs the bus keys of these and no others."""
    absent = set()
    if protocol.allocation is None:
        absent.add("allocation")
    if protocol.randomization.personalized:
        absent.add("randomization")
    return [c for c in FORM_SAVE_CONSUMERS if c not in absent]
