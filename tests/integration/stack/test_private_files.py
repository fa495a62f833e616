"""The embedded stack keeps its data to the user: databases, mail and logs 0600 in 0700
folders, and the REDCap token and DET secret never on a command line (which `ps` shows
to every user of the machine)."""

from __future__ import annotations

import os
import smtplib
import stat
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from tailor_cli.stack import LocalStack


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_stack_files_are_private_and_secrets_stay_off_command_lines(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "left-from-an-older-run.db").write_bytes(b"")
    os.chmod(home / "left-from-an-older-run.db", 0o644)
    stack = LocalStack(home=home, services=[])
    try:
        stack.start(timeout=60)
        token = (home / "secrets" / "redcap-token").read_text()
        det_secret = (home / "secrets" / "redcap-det-secret").read_text()
        for name, pid in stack.pids().items():
            line = _cmdline(pid)
            assert token not in line and det_secret not in line, name
        port = int(stack.url_of("smtp-sink").rsplit(":", 1)[1])
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "t@x.example", "p@x.example", "week 4"
        mail.set_content("your questionnaire")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(mail)
        deadline = time.monotonic() + 10
        while not list((home / "mail").glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list((home / "mail").glob("*.eml"))
        assert (home / "redcap.sqlite").exists()
        wide = []
        for folder, _dirs, files in os.walk(home):
            for path in [Path(folder), *(Path(folder) / f for f in files)]:
                mode = stat.S_IMODE(path.lstat().st_mode)
                if mode & 0o077:
                    wide.append(f"{path.relative_to(home)} {oct(mode)}")
        assert wide == []
    finally:
        stack.stop()
