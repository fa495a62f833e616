"""deploy/k8s/components/monitoring/prometheus-rule.yaml from deploy/monitoring/alerts.yaml.

    python -m tests.deploy.render_rules     # rewrite it after changing an alert
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "monitoring" / "alerts.yaml"
RULE = ROOT / "deploy" / "k8s" / "components" / "monitoring" / "prometheus-rule.yaml"
HEADER = ("# Generated from deploy/monitoring/alerts.yaml (tests/deploy/test_monitoring.py keeps them\n"
          "# identical): `python -m tests.deploy.render_rules` rewrites it.\n")


def render() -> str:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "tailor-alerts", "labels": {"role": "alert-rules"}},
            "spec": {"groups": groups}}
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)


if __name__ == "__main__":
    RULE.write_text(render(), encoding="utf-8")
