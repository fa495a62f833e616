"""The floors in pyproject.toml are ones the code really runs on, and the constraints file
that `make` installs from pins every installed distribution."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[3]


def _floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    floors = {}
    for line in reqs:
        req = Requirement(line)
        for spec in req.specifier:
            if spec.operator == ">=":
                floors[req.name.lower()] = Version(spec.version)
    return floors


def test_fastapi_floor_has_dependency_scopes() -> None:
    uses_scope = any("Depends(" in p.read_text() and re.search(r"Depends\([^)]*scope=", p.read_text())
                     for p in (ROOT / "services").rglob("*.py"))
    assert uses_scope
    assert _floors()["fastapi"] >= Version("0.121")  # Depends(scope=...) arrived in 0.121


def test_constraints_pin_every_requirement_and_not_tailor() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = Version(version)
    assert "tailor" not in pins
    for name, floor in _floors().items():
        key = name.replace("_", "-")
        assert key in pins, f"{name} is not pinned in constraints.txt"
        assert pins[key] >= floor, f"{name}: pinned {pins[key]} is below the floor {floor}"
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
