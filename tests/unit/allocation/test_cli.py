"""The `tailor allocation` commands: synthetic cohort → reproducible model files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from services.allocation.cli import app
from services.allocation.domain import MANIFEST_NAME, read_model, sha256_hex
from services.allocation.domain.publish import library_versions
from services.core.protocol import TrialProtocol

from .conftest import PROTOCOL_FILE, ROOT

runner = CliRunner()


@pytest.fixture
def quick_protocol(tmp_path: Path) -> Path:
    """The PerPAIN protocol with a smaller forest, writing its model into tmp_path."""
    data = yaml.safe_load(PROTOCOL_FILE.read_text())
    data["allocation"]["model"]["path"] = str(tmp_path / "models" / "cluster-model.skops")
    data["allocation"]["training"].update(trees=30, mixture_inits=3, cv_folds=3)
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_synthetic_cohort_then_training_twice_writes_identical_model_files(
        tmp_path: Path, quick_protocol: Path) -> None:
    out = _run("synth-reference", "--protocol", str(quick_protocol), "--size", "150")
    assert "SYNTHETIC" in out
    cohort = tmp_path / "models" / "synthetic-reference.csv"
    assert cohort.read_text().splitlines()[1].split(",")[1] == "synthetic"
    _run("train", str(cohort), "--protocol", str(quick_protocol))
    _run("train", str(cohort), "--protocol", str(quick_protocol), "--out-dir", str(tmp_path / "b"))
    first, second = tmp_path / "models", tmp_path / "b"
    for name in ("cluster-model.skops", MANIFEST_NAME, "MODEL_CARD.md"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    sha = sha256_hex((first / "cluster-model.skops").read_bytes())
    assert manifest["artifact"]["sha256"] == sha
    assert manifest["synthetic"] is True and manifest["training_data"]["rows"] == 150
    assert "SYNTHETIC" in (first / "MODEL_CARD.md").read_text()
    model = read_model(first / "cluster-model.skops", expected_sha256=sha,
                       clusters=["DYS", "ID", "AC"])
    assert model.version == manifest["model_version"]


def test_training_on_unusable_data_fails_with_a_message(tmp_path: Path, quick_protocol: Path
                                                        ) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("record_id,age,sex\n1,50,1\n")
    result = runner.invoke(app, ["train", str(bad), "--protocol", str(quick_protocol)])
    assert result.exit_code == 1
    assert "cannot train" in result.output


def test_the_commands_reproduce_the_shipped_cohort_and_model(
        tmp_path: Path, protocol: TrialProtocol) -> None:
    shipped = ROOT / protocol.allocation.model.path
    manifest = json.loads(shipped.with_name(MANIFEST_NAME).read_text())
    made_with = {k: v for k, v in manifest["library_versions"].items() if k != "python"}
    installed = {k: v for k, v in library_versions().items() if k != "python"}
    if made_with != installed:
        pytest.skip(f"shipped model was made with {made_with}, installed: {installed}")
    _run("synth-reference", "--protocol", str(PROTOCOL_FILE), "--out", str(tmp_path / "ref.csv"))
    shipped_cohort = shipped.with_name("synthetic-reference.csv")
    assert (tmp_path / "ref.csv").read_bytes() == shipped_cohort.read_bytes()
    _run("train", str(shipped_cohort), "--protocol", str(PROTOCOL_FILE),
         "--out-dir", str(tmp_path))
    rebuilt = (tmp_path / shipped.name).read_bytes()
    assert sha256_hex(rebuilt) == protocol.allocation.model.sha256
