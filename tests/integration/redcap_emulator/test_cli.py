"""`python -m sim.redcap`: `check` a project folder, `serve` the emulator."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redcap
from typer.testing import CliRunner

from sim.redcap.__main__ import cli
from sim.redcap.testing import PERPAIN_REDCAP

ROOT = Path(__file__).resolve().parents[3]


def test_check_accepts_the_perpain_folder_and_rejects_a_broken_one(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["check", str(PERPAIN_REDCAP)])
    assert ok.exit_code == 0
    assert "295 fields, 16 instruments, 6 events, 3 user roles: OK" in ok.output
    (tmp_path / "data_dictionary.csv").write_text(
        "field_name,form_name,field_type,field_label\nrecord_id,f,radio,ID\n", encoding="utf-8")
    broken = runner.invoke(cli, ["check", str(tmp_path)])
    assert broken.exit_code == 1
    assert "must be a text field" in broken.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_creates_the_project_once_and_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    token = "C0FFEE" + "0" * 26
    db = tmp_path / "state" / "redcap.sqlite"
    for attempt in range(2):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "sim.redcap", "serve", "--port", str(port), "--db", str(db),
             "--dictionary", str(PERPAIN_REDCAP), "--project-id", "101", "--token", token,
             "--token-file", str(tmp_path / "token")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(base + "/emulator/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            project = redcap.Project(base + "/api/", token)
            assert project.export_project_info()["project_id"] == 101
            if attempt == 0:
                project.import_records([{"record_id": "1", "redcap_event_name": "t0_baseline_arm_1",
                                         "dem_age": 61}])
            assert project.export_records(fields=["dem_age"])[0]["dem_age"] == "61"
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert (tmp_path / "token").read_text(encoding="utf-8").strip() == token


def test_check_names_a_bad_user_roles_file(tmp_path: Path) -> None:
    folder = tmp_path / "redcap"
    shutil.copytree(PERPAIN_REDCAP, folder)
    (folder / "user_roles.json").write_text('[{"role_label": "X", "forms": {"nope": 1}}]')
    bad = CliRunner().invoke(cli, ["check", str(folder)])
    assert bad.exit_code == 1
    assert "The instrument 'nope' in 'forms' does not exist in the project" in bad.output
