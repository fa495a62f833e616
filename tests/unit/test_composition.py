"""Every service is assembled one way (issue 17, "one way to build a service"): its spec
names a composition root, `bootstrap.py`, that builds its typed dependencies once as a
frozen dataclass; `create_app` goes through the kernel's `build_app`; nothing is looked up
in an untyped dict on the kernel, a WeakKeyDictionary or a module-global binding."""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from pathlib import Path

import pytest
from fastapi import FastAPI

from services.core import runner
from services.core.runner import Kernel, ServiceSpec
from services.core.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def _package(name: str) -> str:
    return "gateway" if name == "gateway" else f"services.{name}"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_bootstrap_that_builds_frozen_typed_deps(name: str) -> None:
    app = importlib.import_module(f"{_package(name)}.app")
    spec = app.SPEC
    assert isinstance(spec, ServiceSpec) and spec.name == name
    assert spec.bootstrap is not None, f"{name}: no composition root"
    assert spec.bootstrap.__module__ == f"{_package(name)}.bootstrap"
    built = typing.get_type_hints(spec.bootstrap)["return"]
    assert dataclasses.is_dataclass(built) and built.__dataclass_params__.frozen  # type: ignore[attr-defined]
    # Annotations as written (some name types imported only for type checking).
    fields = {f.name: str(f.type) for f in dataclasses.fields(built)}
    assert fields["kernel"] in ("Kernel", str(Kernel))  # typed handles, not a dict's values
    assert not [t for t in fields.values() if "Any" in t or t.startswith("dict")], fields


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_assembled_by_the_kernels_build_app(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = importlib.import_module(f"{_package(name)}.app")
    assembled: list[ServiceSpec] = []  # type: ignore[type-arg]

    def recording(spec: ServiceSpec, **options: object) -> FastAPI:  # type: ignore[type-arg]
        assembled.append(spec)
        return runner.build_app(spec, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(app, "build_app", recording)
    assert isinstance(app.create_app(), FastAPI)
    [spec] = assembled
    assert spec.name == name and spec.bootstrap is not None


def test_the_kernel_has_no_untyped_extras() -> None:
    names = {f.name for f in dataclasses.fields(Kernel)}
    assert "extras" not in names
    hints = typing.get_type_hints(Kernel)
    assert all(hint is not typing.Any for hint in hints.values())


LOOKUPS = re.compile(r"\.extras\b|WeakKeyDictionary|^_bound\b|^_RUNTIMES\b", re.MULTILINE)


@pytest.mark.parametrize("name", SERVICES)
def test_no_service_reaches_its_dependencies_through_a_lookup(name: str) -> None:
    folder = ROOT / _package(name).replace(".", "/")
    found = [f"{path.relative_to(ROOT)}: {match.group(0)}"
             for path in sorted(folder.rglob("*.py"))
             for match in LOOKUPS.finditer(path.read_text())]
    assert found == []


def test_the_gateway_reads_its_settings_once_into_one_object() -> None:
    """Its edge, REDCap and console sections are read by `GatewayConfig` alone (and by the
    REDCap CLI, a separate process) and reach the routes and jobs through `GatewayDeps`."""
    from gateway.bootstrap import GatewayDeps
    from gateway.config import GatewayConfig

    made_here = re.compile(r"\b(GatewaySettings|RedcapSettings|ConsoleSettings)\(\)")
    elsewhere = sorted(str(p) for p in Path("gateway").rglob("*.py")
                       if p.name not in {"config.py", "cli.py"} and made_here.search(p.read_text()))
    assert elsewhere == []
    assert GatewayDeps.__dataclass_fields__["config"].type in (GatewayConfig, "GatewayConfig")
