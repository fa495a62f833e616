"""Start-up: the service runs only with the model the protocol names, byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from services.allocation.app import SPEC
from services.allocation.bootstrap import StartupRefused
from services.core.protocol import ProtocolError, parse_protocol
from services.core.runner import build_app
from services.core.settings import ServiceSettings
from tailor_cli.natsd import NatsServer
from tests.support import harness
from tests.support.harness import PROTOCOL


def protocol_with_model(tmp_path: Path, *, path: str | None = None,
                        sha256: str | None = None) -> Path:
    data = yaml.safe_load(PROTOCOL.read_text(encoding="utf-8"))
    model = data["allocation"]["model"]
    model["path"] = path or str(PROTOCOL.resolve().parent / model["path"])
    model["sha256"] = sha256 or model["sha256"]
    out = tmp_path / "protocol.yaml"
    out.write_text(yaml.safe_dump(data), encoding="utf-8")
    return out


async def start(tmp_path: Path, nats_url: str, protocol_file: Path) -> None:
    config = harness.test_settings(tmp_path, nats_url).model_copy(update={"protocol_file": protocol_file})
    app = build_app(SPEC, config=config, own=ServiceSettings(
        name="allocation", database_url=f"sqlite:///{tmp_path / 'allocation.db'}"))
    async with app.router.lifespan_context(app):
        pass


async def test_start_up_is_refused_when_the_protocol_names_another_hash(
        tmp_path: Path, nats_server: NatsServer) -> None:
    wrong = protocol_with_model(tmp_path, sha256="0" * 64)
    with pytest.raises(StartupRefused, match=r"SHA-256 .* the protocol expects 0{64}"):
        await start(tmp_path, nats_server.url, wrong)


async def test_start_up_is_refused_for_a_tampered_artifact(
        tmp_path: Path, nats_server: NatsServer) -> None:
    shipped = PROTOCOL.parent / yaml.safe_load(PROTOCOL.read_text())["allocation"]["model"]["path"]
    copy = tmp_path / "model" / shipped.name
    shutil.copytree(shipped.parent, copy.parent)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(StartupRefused, match=r"allocation\.model\.sha256"):
        await start(tmp_path, nats_server.url, protocol_with_model(tmp_path, path=str(copy)))


async def test_start_up_is_refused_when_the_model_file_is_missing(
        tmp_path: Path, nats_server: NatsServer) -> None:
    missing = protocol_with_model(tmp_path, path=str(tmp_path / "nowhere.skops"))
    with pytest.raises(StartupRefused, match="cannot read the model"):
        await start(tmp_path, nats_server.url, missing)


async def test_start_up_is_refused_when_randomization_needs_a_site_the_protocol_does_not_name(
        tmp_path: Path, nats_server: NatsServer) -> None:
    data = yaml.safe_load(PROTOCOL.read_text(encoding="utf-8"))
    data["randomization"].update(stratify_by=["cluster", "site"], sites=["berlin", "essen"])
    by_site = tmp_path / "protocol.yaml"
    by_site.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(StartupRefused, match=r"allocation\.site_field"):
        await start(tmp_path, nats_server.url, by_site)


def test_protocol_is_refused_when_cluster_profiles_do_not_name_the_clusters() -> None:
    data = yaml.safe_load(PROTOCOL.read_text(encoding="utf-8"))
    data["clusters"].append({"key": "XX", "label": "extra", "matching_module": "PERT"})
    with pytest.raises(ProtocolError, match=r"allocation\.cluster_profiles: names \['AC', 'DYS', 'ID'\]"):
        parse_protocol(data, "protocol.yaml")
