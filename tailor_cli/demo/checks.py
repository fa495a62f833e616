"""What the demo verifies before it may exit 0 (pure functions over what it collected)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.core.protocol import TrialProtocol
from sim.cohort import Participant


@dataclass
class Verdict:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        (self.passed if ok else self.failed).append(what)

    @property
    def ok(self) -> bool:
        return not self.failed


def check_allocations(verdict: Verdict, cohort: list[Participant], in_redcap: dict[str, dict[str, str]],
                      unblinded: list[dict], fields: tuple[str, str]) -> None:
    expected = {p.record for p in cohort if p.expects_allocation}
    number_field, module_field = fields
    verdict.check(set(in_redcap) == expected,
                  f"every eligible participant ({len(expected)}) has an allocation in REDCap and "
                  f"nobody else has one ({len(set(in_redcap) - expected)} unexpected, "
                  f"{len(expected - set(in_redcap))} missing)")
    by_record = Counter(a["record"] for a in unblinded)
    verdict.check(all(n == 1 for n in by_record.values()) and set(by_record) == expected,
                  "the randomization service holds exactly one allocation per participant")
    service_view = {a["record"]: a for a in unblinded}
    mismatched = [r for r, row in in_redcap.items()
                  if r not in service_view or service_view[r]["module"] != row[module_field]]
    verdict.check(not mismatched, f"REDCap's module matches the randomization service for every "
                                  f"participant ({len(mismatched)} mismatches)")
    numbers = [row[number_field] for row in in_redcap.values()]
    verdict.check(len(numbers) == len(set(numbers)), "allocation numbers are unique")
    skipped = {p.story for p in cohort if not p.expects_allocation and p.record in in_redcap}
    verdict.check(not skipped, "no allocation for the ineligible, the unscorable baseline or the "
                               "withdrawn participant")


def design_table(protocol: TrialProtocol, unblinded: list[dict]) -> list[tuple[str, str, str, int]]:
    """(cluster, arm, module, count), in protocol order."""
    counts = Counter((a["cluster"], a["arm"], a["module"]) for a in unblinded if not a.get("pilot"))
    return [(c.key, arm.key, m, counts[(c.key, arm.key, m)])
            for c in protocol.clusters for arm in protocol.arms for m in protocol.module_keys
            if counts[(c.key, arm.key, m)]]


def check_design(verdict: Verdict, protocol: TrialProtocol, unblinded: list[dict]) -> None:
    """Permuted blocks keep each stratum within half a block of the 2:1:1 ratio at all times."""
    w, rule = protocol.randomization.module_weights, protocol.randomization.arm_of
    if w is None or rule is None:
        raise ValueError("this check reads a personalized design (module_weights, arm_of)")
    unit = w.matching + w.non_matching * (len(protocol.modules) - 1)
    slack = max(protocol.randomization.block_lengths) / 2
    for cluster in protocol.clusters:
        rows = [a for a in unblinded if a["cluster"] == cluster.key and not a.get("pilot")]
        n = len(rows)
        for module in protocol.module_keys:
            weight = w.matching if module == cluster.matching_module else w.non_matching
            got = sum(1 for a in rows if a["module"] == module)
            target = n * weight / unit
            verdict.check(abs(got - target) <= slack,
                          f"{cluster.key} → {module}: {got} of {n} (design {target:.1f} ± {slack:.0f})")
        arm_ok = all(a["arm"] == (rule.matching if a["module"] == cluster.matching_module
                                  else rule.non_matching) for a in rows)
        verdict.check(arm_ok, f"{cluster.key}: arm follows the module (matching = personalized)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def expected_enrolment(cohort: list[Participant]) -> dict[str, int]:
    """The CONSORT enrolment boxes the cohort's stories must produce."""
    stories = Counter(p.story for p in cohort)
    return {"assessed": len(cohort), "not_meeting_criteria": stories["ineligible"], "declined": 0,
            "other": stories["withdrawn"], "awaiting_randomization": stories["unscorable"],
            "randomized": stories["allocate"]}


def expected_received(cohort: list[Participant]) -> int:
    """Allocated participants whose week-4 withdrawal form says they started the module."""
    return sum(1 for p in cohort if p.expects_allocation and p.started_module)


def enrolment_of(flow: dict) -> dict[str, int]:
    return {"assessed": flow["assessed"], **flow["excluded"],
            "awaiting_randomization": flow["awaiting_randomization"],
            "randomized": flow["randomized"]}


def check_flow(verdict: Verdict, cohort: list[Participant], blinded: dict, unblinded: dict) -> None:
    """Every participant the demo entered is counted exactly once in each level of the
    CONSORT flow, and the per-arm flow (DSMB) adds up to the pooled one."""
    want, got = expected_enrolment(cohort), enrolment_of(blinded)
    verdict.check(got == want, f"CONSORT enrolment matches the cohort entered ({got})")
    verdict.check(got["assessed"] == sum(v for k, v in got.items() if k != "assessed"),
                  "every screened participant is in exactly one enrolment box")
    pooled = blinded["pooled"]
    verdict.check(pooled["allocated"] == pooled["lost_to_follow_up"] + pooled["discontinued"]
                  + pooled["continuing"] == pooled["analysed"] + pooled["not_analysed"],
                  "follow-up and analysis boxes each add up to the allocated")
    received = expected_received(cohort)
    verdict.check(pooled.get("received_intervention") == received,
                  f"received allocated intervention: {pooled.get('received_intervention')} "
                  f"counted, {received} started their module in the cohort entered")
    verdict.check(blinded["by_arm"] is None, "blinded readers get the pooled flow only")
    arms = unblinded.get("by_arm") or []
    verdict.check(sum(g["allocated"] for g in arms) == blinded["randomized"],
                  "the DSMB's per-arm flow adds up to the randomized")
    verdict.check(sum(g.get("received_intervention") or 0 for g in arms) == received,
                  "the DSMB's per-arm received intervention adds up to the pooled")


def check_feasibility(verdict: Verdict, cohort: list[Participant], rows: list[dict]) -> None:
    """The PerPAIN counts the feasibility table is built on match the cohort entered."""
    want = expected_enrolment(cohort)
    consented = sum(1 for p in cohort if p.story != "ineligible")
    by_key = {r["key"]: r for r in rows}
    for key, expected in (("recruitment", consented), ("randomized", want["randomized"])):
        if key in by_key:
            verdict.check(by_key[key]["numerator"] == expected,
                          f"feasibility {key}: {by_key[key]['numerator']} counted, "
                          f"{expected} in the cohort entered")
    verdict.check(all(r["numerator"] <= r["denominator"] for r in rows),
                  "every feasibility numerator lies within its denominator")


def check_diary(verdict: Verdict, sent: int, answered: int, acceptability: dict) -> None:
    """The reports service's diary adherence against the demo's own counts: the prompt SMS
    the diary participants received and the ones they answered on the REDCap survey."""
    diary = acceptability["pooled"]["diary"]
    verdict.check(sent > 0 and 0 < answered <= sent,
                  f"diary prompts went out by SMS and some were answered ({answered} of {sent})")
    verdict.check((diary["prompts_sent"], diary["answered_in_time"]) == (sent, answered),
                  f"the reports count every prompt received ({diary['prompts_sent']} of {sent}) "
                  f"and every answer given ({diary['answered_in_time']} of {answered})")
    rate = acceptability["diary_adherence"]
    verdict.check(rate is not None and sent > 0 and rate == answered / sent,
                  f"diary adherence {rate} is answered / sent of the demo's own counts "
                  f"({answered}/{sent})")
