"""A synthetic cohort for a seed trial without a prediction step (partners4pain,
rush-mechanisms, …), driven by its protocol file: screened people and, for each, the forms
site staff enter in REDCap in order, with the values they type.

Each person gets a site (by the protocol's site codes), an answer to every eligibility
criterion, a value for every stratification factor, demographics and the baseline PEG.
Stories: `allocate` (eligible, baseline complete), `ineligible` (one criterion fails, so the
eligibility field is 0), `withdrawn` (withdraws before the last baseline form). Drawn
plausibly, labelled synthetic: no real person is here.
"""

from __future__ import annotations

import random
from datetime import date

from services.core.protocol import TrialProtocol

from .cohort import Participant, Story


def _factor_value(rng: random.Random, factor: object) -> str:
    codes = getattr(factor, "codes", None)
    if codes:
        return str(rng.choice(list(codes)))
    cuts: list[float] = getattr(factor, "cut_points", None) or []
    low, high = 3, 10  # a 0-10 rating of someone eligible (the seeds' threshold is 3)
    if cuts and cuts[0] > high:
        high = int(cuts[-1]) + 5
    return str(rng.randint(low, high))


def make_seed_cohort(protocol: TrialProtocol, *, eligible: int, ineligible: int = 6,
                     withdrawn: int = 1, seed: int = 15) -> list[Participant]:
    """`eligible` people complete the baseline (of whom `withdrawn` withdraw before the
    end of it); `ineligible` fail a criterion. Records are numbered in screening order."""
    rng = random.Random(seed)
    r, f = protocol.randomization, protocol.redcap.fields
    site_codes = list((r.site.codes or {s: s for s in r.sites}).keys())
    withdrawns: list[Story] = ["withdrawn"] * withdrawn
    allocates: list[Story] = ["allocate"] * (eligible - withdrawn)
    ineligibles: list[Story] = ["ineligible"] * ineligible
    stories = withdrawns + allocates + ineligibles
    rng.shuffle(stories)
    cohort = []
    for n, story in enumerate(stories, start=1):
        p = Participant(f"{2000 + n}", story)
        screening: dict[str, str] = {"scr_date": date.today().isoformat()}
        if r.site.field:
            screening[r.site.field] = rng.choice(site_codes)
        for factor in r.factors:
            screening[factor.field] = _factor_value(rng, factor)
        criteria = protocol.eligibility
        if criteria is not None:
            screening.update({c.field: "1" for c in criteria.inclusion})
            screening.update({c.field: "0" for c in criteria.exclusion})
            if story == "ineligible":  # one criterion fails
                failed = rng.choice([*criteria.inclusion, *criteria.exclusion])
                screening[failed.field] = "0" if failed in criteria.inclusion else "1"
                screening["scr_ineligible_reason"] = failed.label
            eligible_now = criteria.eligible(screening)
        else:
            eligible_now = story != "ineligible"
        screening[f.eligible] = "1" if eligible_now else "0"
        p.forms.append(("screening", screening))
        if story == "ineligible":
            cohort.append(p)
            continue
        p.forms.append(("consent", {
            f.consent: "1", "cons_date": date.today().isoformat(),
            "cons_email": f"participant{n}@example.org", "cons_mobile": f"+1612555{n:04d}",
            "cons_address": f"{n} Test Street\nMinneapolis, MN 55455", "cons_language": "en",
            "cons_timezone": protocol.reminders.default_timezone}))
        p.forms.append(("demographics", {f.age: str(rng.randint(18, 85)),
                                         f.sex: rng.choice(list(protocol.redcap.sex_codes))}))
        if story == "withdrawn":
            p.forms.append(("withdrawal", {f.withdrawn: "1", "wd_date": date.today().isoformat(),
                                           "wd_reason": "1", "wd_preventable": "0"}))
        p.forms.append(("baseline_measures", {f"peg_{k}": str(rng.randint(3, 10))
                                              for k in ("pain", "enjoyment", "activity")}))
        cohort.append(p)
    return cohort
