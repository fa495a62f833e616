"""Heavy libraries load only in the process that needs them: scikit-learn and skops where
a cluster model is trained or read, never when a service's app is created or the CLI and
the kernel are imported (each costs seconds at every process start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("sklearn", "skops", "scipy", "pandas")

PROBE = """
import sys
import services.core.runner, services.core.consumers, services.core.outbox
import tailor_cli.main
from tailor_cli import registry
for name in registry.APPS:
    registry.app_factory(name)()
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(",".join(heavy))
"""


def test_creating_every_app_loads_no_machine_learning_library(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)], cwd=root, capture_output=True,
        text=True, timeout=240,
        env={"PYTHONPATH": str(root), "TAILOR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"loaded at import/app creation: {done.stdout.strip()}"
