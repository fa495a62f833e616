"""`tailor up` starts nats-server and every service, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_tailor_up_starts_everything_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "stack"
    env = {**os.environ, "TAILOR_GATEWAY_PORT": "0"}
    env.pop("TAILOR_GATEWAY_PORT")
    proc = subprocess.Popen([sys.executable, "-m", "tailor_cli", "up", "--home", str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "ready" in line and "Ctrl-C" in line:
                break
        else:
            pytest.fail("tailor up ended before it was ready:\n" + "".join(output))
        state = json.loads((home / "stack.json").read_text())
        pids = state["pids"]
        assert {"nats-server", "gateway", "allocation", "randomization"} <= set(pids)
        assert all(_alive(pid) for pid in pids.values())
        assert {"redcap-emulator", "smtp-sink", "sms-provider"} <= set(pids)
        for name in ("gateway", "allocation", "randomization", "notifications", "safety", "reports"):
            assert httpx.get(f"{state['urls'][name]}/readyz", timeout=5).status_code == 200, name
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest or "")
    assert proc.returncode == 0, "".join(output)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not orphans, f"left running: {orphans}"
    assert not (home / "stack.json").exists()
