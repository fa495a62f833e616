"""A synthetic PerPAIN cohort for the demo and the end-to-end tests: screened participants
and, for each, the forms site staff enter in REDCap, in order, with the values they type.

MPI-D answers come from the protocol's synthetic reference (published centroids and
spreads); everything else is drawn plausibly. Labelled synthetic: no real person is here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from services.allocation.domain.synthetic import synthesize_reference
from services.core.protocol import TrialProtocol

# late: completes the baseline after their group was randomized (group designs: held for review)
Story = Literal["allocate", "ineligible", "unscorable", "withdrawn", "late"]
INTERFERENCE_ITEMS = ("1_2", "1_3", "1_4", "1_8")  # blanking these makes interference unscorable
PANAS = ("interested distressed excited upset strong guilty scared hostile enthusiastic proud "
         "irritable alert ashamed inspired nervous determined attentive jittery active afraid").split()


@dataclass
class Participant:
    record: str
    story: Story
    forms: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    started_module: bool = False  # allocated, and began the module by the week-4 visit

    @property
    def expects_allocation(self) -> bool:
        return self.story == "allocate"


_INELIGIBLE: Story = "ineligible"

def _mpid(row: dict[str, object], prefix: str) -> dict[str, str]:
    return {k: str(v) for k, v in row.items() if k.startswith(prefix) and v is not None}


def make_cohort(protocol: TrialProtocol, *, eligible: int = 105, ineligible: int = 12,
                seed: int = 7, unscorable: int = 1, withdrawn: int = 1,
                not_started: float = 0.05) -> list[Participant]:
    """`eligible` participants complete the baseline (of whom `unscorable` have an MPI-D
    that cannot be scored and `withdrawn` withdraw before allocation); `ineligible` are
    screened out. Of the allocated, about `not_started` never begin their module (the rest
    have `started_module`, see `module_started_form`). Records are numbered in screening
    order."""
    rng = random.Random(seed)
    a, fields = protocol.prediction, protocol.redcap.fields
    prefix = fields.mpid_item_prefix
    rows = synthesize_reference(a.synthetic_reference, a.reference_norms, seed=seed,
                                size=eligible, item_prefix=prefix)
    unscorables: list[Story] = ["unscorable"] * unscorable
    withdrawns: list[Story] = ["withdrawn"] * withdrawn
    allocates: list[Story] = ["allocate"] * (eligible - unscorable - withdrawn)
    stories = unscorables + withdrawns + allocates
    rng.shuffle(stories)
    screened: list[tuple[Story, dict[str, object] | None]] = [
        *zip(stories, rows, strict=True), *[(_INELIGIBLE, None)] * ineligible]
    rng.shuffle(screened)
    sex_code = {v: k for k, v in protocol.redcap.sex_codes.items()}
    cohort = []
    for n, (story, row) in enumerate(screened, start=1):
        record = f"{1000 + n}"
        p = Participant(record, story)
        p.forms.append(("screening", _screening(rng, story != "ineligible")))
        if story == "ineligible":
            cohort.append(p)
            continue
        assert row is not None
        p.forms.append(("consent", _consent(rng, n, fields)))
        p.forms.append(("demographics", {fields.age: str(row["age"]),
                                         fields.sex: sex_code[int(row["sex"])]}))  # type: ignore[call-overload]
        mpid = _mpid(row, prefix)
        if story == "unscorable":
            for item in INTERFERENCE_ITEMS:
                mpid.pop(f"{prefix}{item}", None)
        if story == "withdrawn":
            p.forms.append(("withdrawal", {fields.withdrawn: "1", "wd_date": date.today().isoformat(),
                                           "wd_reason": "1", "wd_preventable": "0"}))
        p.forms.append(("mpid", mpid))
        p.forms.append(("hads", {f"hads_{i}": str(rng.randint(0, 3)) for i in range(1, 15)}))
        p.forms.append(("panas", {f"panas_{w}": str(rng.randint(1, 5)) for w in PANAS}))
        p.forms.append(("odi", {f"odi_{i}": str(rng.randint(0, 5)) for i in range(1, 11)}))
        cohort.append(p)
    starts = random.Random(seed + 1)  # its own stream: the baseline values stay as they were
    for p in cohort:
        p.started_module = p.expects_allocation and starts.random() >= not_started
    return cohort


def module_started_form(protocol: TrialProtocol, p: Participant) -> tuple[str, dict[str, str]]:
    """What site staff record at the week-4 visit on the withdrawal form: not withdrawn, and
    whether the participant has started the allocated module (the reports' "received
    allocated intervention")."""
    rules = protocol.reports
    if rules is None or rules.received_field is None:
        raise ValueError("the protocol records no received_field (reports.received_field)")
    return protocol.redcap.withdrawal_form, {
        protocol.redcap.fields.withdrawn: "0",
        rules.received_field: "1" if p.started_module else "0"}


def _screening(rng: random.Random, eligible: bool) -> dict[str, str]:
    values = {"scr_date": date.today().isoformat(), "scr_diagnosis": rng.choice("134"),
              "scr_pain_months": str(rng.randint(6, 240)), "scr_pain_intensity": str(rng.randint(3, 9)),
              "scr_mobile_ok": "1", "scr_eligible": "1" if eligible else "0"}
    if not eligible:
        values["scr_ineligible_reason"] = "pain duration or intensity below the inclusion criteria"
    return values


def _consent(rng: random.Random, n: int, fields: object) -> dict[str, str]:
    language = rng.choice(["de", "de", "de", "en"])
    return {"cons_given": "1", "cons_date": date.today().isoformat(),
            "cons_email": f"participant{n}@example.org", "cons_mobile": f"+49151{n:07d}",
            "cons_address": f"Teststraße {n}\n10115 Berlin", "cons_language": language,
            "cons_timezone": "Europe/Berlin"}
