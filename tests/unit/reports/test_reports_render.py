"""CSV tables and the CONSORT SVG: well-formed (a browser opens it), escaped, one column per
group only when per-arm figures were given."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import date

from services.reports.domain import ArmOf, cohort_on, consort_flow, feasibility
from services.reports.render import consort_svg, feasibility_csv, flow_csv

from .test_reports_domain import AS_OF, COHORT, RULES, TPS

SVG = "{http://www.w3.org/2000/svg}"


def _flow(arm_of: ArmOf | None = None):  # type: ignore[no-untyped-def]
    return consort_flow(cohort_on(COHORT, TPS, AS_OF), as_of=AS_OF, primary="t1",
                        lost_reasons=["lost_to_follow_up"], arms=["personalized", "non_personalized"],
                        arm_of=arm_of)


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_pooled_diagram_is_valid_svg_with_every_box() -> None:
    svg = consort_svg(_flow(), title="PerPAIN <pilot> & co")
    texts = _texts(svg)  # parses: well-formed XML
    assert "PerPAIN <pilot> & co" in texts  # escaped in the file, intact when read
    assert "&lt;pilot&gt;" in svg
    for expected in ("Assessed for eligibility (n=9)", "Randomized (n=5)", "Analysed (n=1)",
                     "All randomized (n=5)", "Excluded (n=3)"):
        assert expected in texts, expected
    assert not any(t.startswith("Allocated:") for t in texts)


def test_per_arm_diagram_has_one_column_per_arm() -> None:
    arms = ArmOf(arm={f"r{i}": ("personalized" if i % 2 else "non_personalized") for i in range(1, 6)},
                 cluster={f"r{i}": "DYS" for i in range(1, 6)})
    texts = _texts(consort_svg(_flow(arms), title="t"))
    assert {t for t in texts if t.startswith("Allocated:")} == {
        "Allocated: personalized (n=3)", "Allocated: non personalized (n=2)"}


def test_flow_csv_counts_each_level_once() -> None:
    rows = list(csv.DictReader(io.StringIO(flow_csv(_flow()))))
    enrolment = [r for r in rows if r["level"] == "enrolment" and r["box"] != "assessed"]
    assert sum(int(r["participants"]) for r in enrolment) == 9
    follow_up = [r for r in rows if r["level"] == "follow_up"]
    assert sum(int(r["participants"]) for r in follow_up) == 5
    analysis = [r for r in rows if r["level"] == "analysis"]
    assert sum(int(r["participants"]) for r in analysis) == 5


def test_feasibility_csv_has_a_row_per_criterion() -> None:
    results = feasibility(RULES.feasibility, cohort_on(COHORT, TPS, AS_OF), TPS,
                          as_of=date(2026, 5, 5), strategy_changed_on=None)
    rows = list(csv.DictReader(io.StringIO(feasibility_csv(results))))
    assert [r["criterion"] for r in rows] == [c.key for c in RULES.feasibility]
    assert all(r["ci_method"] == "wilson" for r in rows)
