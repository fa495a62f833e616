"""`tailor demo --protocol iact-mmrp` end to end (real stack as processes, the REDCap
emulator): groups form, the coordinator closes each through the gateway, every member is
written back to REDCap with the group's arm, the latecomer is held for review, and the demo
exits 0 with its design checks passed. A small cohort keeps it short."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from tailor_cli.demo.designs import run_design_demo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_the_iact_mmrp_demo_runs_and_checks_its_groups(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_design_demo("iact-mmrp", tmp_path / "home", Console(file=out, width=200),
                           participants=24)
    text = out.getvalue()
    assert code == 0, text
    assert "✗" not in text
    for check in ("every member of every group holds the group's arm (0 groups split)",
                  "held for the study manager's review and not allocated",
                  "stratum all:", "each randomized once",
                  "has an allocation in REDCap and nobody else has one"):
        assert check in text, text
    assert "groups per arm per stratum" in text and "follow-up answered" in text
