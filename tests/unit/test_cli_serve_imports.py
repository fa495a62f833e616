"""`tailor serve <service>` loads no other service's command group (memory per process)."""

from __future__ import annotations

import subprocess
import sys

PROBE = ("import sys; sys.argv = ['tailor', *sys.argv[1:]]; import tailor_cli.main as m; "
         "print(sorted(g.name for g in m.app.registered_groups), 'sklearn' in sys.modules)")


def _probe(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def test_serve_imports_no_command_groups() -> None:
    assert _probe("serve", "safety") == "[] False"


def test_other_commands_still_have_their_groups() -> None:
    groups = _probe("allocation", "--help")
    assert "'allocation'" in groups and "'randomization'" in groups


def test_reports_service_loads_without_scipy() -> None:
    probe = ("import sys; from tailor_cli import registry; registry.app_factory('reports')(); "
             "print('scipy' in sys.modules, 'sklearn' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False False"
