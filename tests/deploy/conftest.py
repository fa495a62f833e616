"""Deployment checks use tools outside Python (kubectl's kustomize, promtool, checkov):
`scripts/ensure-tools.sh` installs them. Missing, they skip a test here and fail it in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ("base", "overlays/staging", "overlays/production")
IN_CI = os.environ.get("CI", "").lower() == "true"


def tool(name: str, path: Path | None = None) -> str:
    found = str(path) if path is not None and path.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (scripts/ensure-tools.sh installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


@cache
def rendered_text(target: str) -> str:
    """`kubectl kustomize` with its default load restrictor (files only from inside the root)."""
    kubectl = tool("kubectl")
    done = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(target: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered_text(target)) if d]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return str(request.param)
