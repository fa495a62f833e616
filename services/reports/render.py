"""The figures as CSV tables and the CONSORT diagram as SVG (a Jinja2 template; text is
escaped, so a reason or label can never inject markup)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from .domain import Acceptability, CriterionResult, Flow, GroupFlow, Recruitment, Retention

_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True),
                         trim_blocks=True, lstrip_blocks=True)


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return out.getvalue()


def _group_rows(g: GroupFlow) -> Iterable[tuple[object, ...]]:
    yield ("allocation", "allocated", g.group, "", g.allocated)
    yield ("allocation", "received_intervention", g.group,
           "not recorded" if g.received_intervention is None else "", g.received_intervention)
    for reason, n in g.lost_reasons.items():
        yield ("follow_up", "lost_to_follow_up", g.group, reason, n)
    for reason, n in g.discontinued_reasons.items():
        yield ("follow_up", "discontinued", g.group, reason, n)
    yield ("follow_up", "continuing", g.group, "", g.continuing)
    yield ("analysis", "analysed", g.group, "", g.analysed)
    for reason, n in g.not_analysed_reasons.items():
        yield ("analysis", "not_analysed", g.group, reason, n)


def flow_csv(flow: Flow) -> str:
    e = flow.excluded
    rows: list[tuple[object, ...]] = [
        ("enrolment", "assessed", "all", "", flow.assessed),
        ("enrolment", "excluded", "all", "not_meeting_criteria", e.not_meeting_criteria),
        ("enrolment", "excluded", "all", "declined", e.declined),
        ("enrolment", "excluded", "all", "other", e.other),
        ("enrolment", "awaiting_randomization", "all", "", flow.awaiting_randomization),
        ("enrolment", "randomized", "all", "", flow.randomized)]
    for g in [flow.pooled, *(flow.by_arm or []), *(flow.by_cluster_module or [])]:
        rows += _group_rows(g)
    return _csv(("level", "box", "group", "reason", "participants"), rows)


def feasibility_csv(results: Sequence[CriterionResult]) -> str:
    return _csv(("criterion", "label", "measure", "numerator", "denominator", "value", "ci_low",
                 "ci_high", "ci_method", "confidence", "verdict"),
                ((c.key, c.label, c.measure, c.numerator, c.denominator, c.value, c.ci_low,
                  c.ci_high, c.ci_method, c.confidence, c.verdict) for c in results))


def recruitment_csv(r: Recruitment) -> str:
    rows: list[tuple[object, ...]] = [("all", w.week_start, w.randomized, w.cumulative)
                                      for w in r.weeks]
    rows += [(s.site, s.week_start, s.randomized, None) for s in r.by_site]
    return _csv(("site", "week_start", "randomized", "cumulative"), rows)


def retention_csv(r: Retention) -> str:
    return _csv(("timepoint", "not_yet_due", "open", "complete", "overdue", "lost", "due",
                 "completion_rate", "ci_low", "ci_high", "reminders_per_completed"),
                ((t.timepoint, t.not_yet_due, t.open, t.complete, t.overdue, t.lost, t.due,
                  t.completion_rate, t.ci_low, t.ci_high, t.reminders_per_completed)
                 for t in r.timepoints))


def acceptability_csv(a: Acceptability) -> str:
    """One row per group and measure. Diary rows: `count` answered in time, `of` prompts
    sent, `rate` their ratio (overall, then per ISO week)."""
    rows: list[tuple[object, ...]] = []
    for g in [a.pooled, *(a.by_arm or [])]:
        d = g.diary
        rows.append((g.group, "diary_adherence", d.answered_in_time, d.participants, None, None,
                     d.prompts_sent, d.adherence))
        for w in d.weeks:
            rows.append((g.group, f"diary_adherence:{w.week}", w.answered_in_time,
                         w.participants, None, None, w.prompts_sent, w.adherence))
        for n in g.negative_effects:
            rows.append((g.group, f"neq:{n.timepoint}", n.questionnaires, n.with_negative_effect,
                         n.mean_effects, n.attributed_to_treatment, None, None))
        ae = g.adverse_events
        rows.append((g.group, "adverse_events", ae.events, ae.participants_with_event, None, None,
                     None, None))
        rows.append((g.group, "serious_adverse_events", ae.serious, ae.participants_with_serious,
                     None, None, None, None))
    return _csv(("group", "measure", "count", "participants", "mean_effects",
                 "attributed_to_treatment", "of", "rate"), rows)


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    lines: list[str]

    @property
    def height(self) -> int:
        return 16 + 17 * len(self.lines)


def _reasons(reasons: dict[str, int]) -> list[str]:
    return [f"  • {r.replace('_', ' ')} (n={n})" for r, n in reasons.items()]


def consort_svg(flow: Flow, *, title: str) -> str:
    """CONSORT 2010 diagram: enrolment on top, one column per group below randomization
    (pooled for blinded callers; one per arm for unblinded callers)."""
    groups = flow.by_arm if flow.by_arm is not None else [flow.pooled]
    col, gap = 300, 30
    width = max(3 * col + 2 * gap, len(groups) * (col + gap) + gap)
    mid = width // 2 - col // 2
    e = flow.excluded
    top = [Box(mid, 60, col, [f"Assessed for eligibility (n={flow.assessed})"])]
    excluded = Box(mid + col + gap // 2, 110, col - 20, [
        f"Excluded (n={flow.excluded_total})",
        f"  • not meeting criteria (n={e.not_meeting_criteria})",
        f"  • declined to participate (n={e.declined})", f"  • other reasons (n={e.other})",
        f"Awaiting randomization (n={flow.awaiting_randomization})"])
    randomized = Box(mid, 240, col, [f"Randomized (n={flow.randomized})"])
    columns = []
    for i, g in enumerate(groups):
        x = (width - len(groups) * (col + gap) + gap) // 2 + i * (col + gap)  # centred
        label = "All randomized" if g.group == "all" else f"Allocated: {g.group.replace('_', ' ')}"
        allocated = Box(x, 310, col, [f"{label} (n={g.allocated})",
                                      "  • received intervention: not recorded"
                                      if g.received_intervention is None else
                                      f"  • received intervention (n={g.received_intervention})"])
        follow = Box(x, 400, col, [f"Lost to follow-up (n={g.lost_to_follow_up})",
                                   *_reasons(g.lost_reasons),
                                   f"Discontinued (n={g.discontinued})",
                                   *_reasons(g.discontinued_reasons)])
        analysis = Box(x, follow.y + follow.height + 40, col,
                       [f"Analysed (n={g.analysed})", f"Not analysed (n={g.not_analysed})",
                        *_reasons(g.not_analysed_reasons)])
        columns.append((allocated, follow, analysis))
    bottom = max(a.y + a.height for _al, _f, a in columns) + 40
    return _TEMPLATES.get_template("consort.svg.j2").render(
        title=title, as_of=flow.as_of.isoformat(), width=width, height=bottom, top=top[0],
        excluded=excluded, randomized=randomized, columns=columns)
