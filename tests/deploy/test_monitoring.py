"""Alert rules pass promtool's checks and unit tests, each has its runbook paragraph, the
PrometheusRule matches them, and the Grafana dashboards load and query real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, tool
from .render_rules import RULE, render

pytestmark = pytest.mark.deploy
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
# Metrics of the standard exporters (prometheus-nats-exporter, postgres_exporter) and Prometheus.
EXTERNAL = re.compile(r"^(jetstream_|gnatsd_|pg_|up$)")


def _alerts() -> list[dict]:
    data = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [r for g in data["groups"] for r in g["rules"]]


def _promtool(*args: str) -> str:
    done = subprocess.run([tool("promtool"), *args], cwd=MONITORING, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_checks_the_rules() -> None:
    out = _promtool("check", "rules", "alerts.yaml")
    print(out.strip())
    assert f"SUCCESS: {len(_alerts())} rules found" in out


def test_promtool_unit_tests_every_alert() -> None:
    out = _promtool("test", "rules", "alerts-test.yaml")
    assert "SUCCESS" in out
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "alerts-test.yaml").read_text()))
    assert {a["alert"] for a in _alerts()} <= tested


def test_every_alert_has_a_runbook_paragraph() -> None:
    book = (MONITORING / "RUNBOOK.md").read_text()
    for alert in _alerts():
        name = alert["alert"]
        assert alert["annotations"]["runbook"] == f"deploy/monitoring/RUNBOOK.md#{name.lower()}"
        section = book.split(f"## {name}\n", 1)
        assert len(section) == 2, f"RUNBOOK.md has no section {name}"
        paragraph = section[1].split("\n## ", 1)[0].strip()
        assert len(paragraph.split()) >= 20, f"{name}: the runbook paragraph is too thin"
        assert alert["labels"]["severity"] in ("warning", "critical")


def test_the_prometheus_rule_object_holds_the_same_rules() -> None:
    assert RULE.read_text() == render(), "run `python -m tests.deploy.render_rules`"


def _tailor_metric_names() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("gateway/**/*.py")]:
        names |= set(re.findall(r'"(tailor_[a-z0-9_]+)"', path.read_text()))
    return names


def _metrics_in(expr: str) -> set[str]:
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?=\s*[{\[)]|\s*$|\s*[-+*/<>=])", expr))
    return {w for w in words if w.startswith(("tailor_", "jetstream_", "pg_")) or w == "up"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboards_load_and_query_known_metrics(path: Path, tmp_path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] == path.stem and board["title"] and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    known = _tailor_metric_names()
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert exprs
    for expr in exprs:
        for metric in _metrics_in(expr):
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert base in known or EXTERNAL.match(metric), f"{path.name}: unknown metric {metric}"
    # promtool parses every query (as recording rules of a throw-away file).
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(rules))
    done = subprocess.run([tool("promtool"), "check", "rules", str(tmp_path / "queries.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_det_to_writeback_histogram_is_on_the_trial_flow_board() -> None:
    board = (MONITORING / "dashboards" / "tailor-trial-flow.json").read_text()
    assert "tailor_det_to_writeback_seconds_bucket" in board
