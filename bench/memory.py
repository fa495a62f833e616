"""Memory benchmark: idle resident memory of every process of the embedded stack.

Run: `.venv/bin/python bench/memory.py [--idle 5]`

Starts the stack exactly as `tailor up` does (tailor_cli/stack.py: nats-server, the
simulators, every service as its own process) in a throw-away home, waits until every
process is ready, lets it idle `--idle` seconds, then reads each process's RSS (with its
descendants) from /proc, and its PSS (shared pages split between the processes sharing
them), which is what sums honestly to the stack's total. Baseline in the same run: an
idle Python that has imported what every service imports (FastAPI, uvicorn, SQLModel,
nats-py) and nothing of ours, the floor of a service on this stack. Goals (issue 18):
every service idles under 150 MB; the whole stack under 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peak_rss import peak_rss_line  # noqa: E402
from tailor_cli import registry  # noqa: E402
from tailor_cli.stack import LocalStack  # noqa: E402

SERVICE_GOAL_MB, STACK_GOAL_MB = 150, 1500
FLOOR = ("import time, fastapi, uvicorn, sqlmodel, nats, httpx; "
         "print('ready', flush=True); time.sleep(600)")


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (uvicorn workers, helpers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def _kib(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def usage_mb(pid: int) -> tuple[float, float, int, int]:
    """(RSS, PSS) in MB of `pid` with its descendants, how many processes, their threads."""
    pids = _descendants(pid)
    rss = sum(_kib(p, "status", "VmRSS") for p in pids)
    pss = sum(_kib(p, "smaps_rollup", "Pss") for p in pids)
    threads = sum(_kib(p, "status", "Threads") for p in pids)
    return rss / 1000, pss / 1000, len(pids), threads


def floor_mb(idle: float) -> float:
    proc = subprocess.Popen([sys.executable, "-c", FLOOR], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(idle)
        return usage_mb(proc.pid)[0]
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to idle before reading")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for ready")
    args = parser.parse_args()
    os.chdir(ROOT)  # the stack resolves protocols/ and sim dictionaries from here
    print(f"memory benchmark: Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    floor = floor_mb(args.idle)
    print(f"baseline: idle Python with FastAPI, uvicorn, SQLModel, nats-py imported: "
          f"{floor:,.0f} MB RSS")
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(home=Path(tmp) / "home", services=registry.existing())
        try:
            stack.start(timeout=args.timeout)
            time.sleep(args.idle)
            rows = {name: usage_mb(pid) for name, pid in stack.pids().items()}
        finally:
            stack.stop()
    services = set(registry.existing())
    for name, (rss, pss, procs, threads) in sorted(rows.items()):
        goal = f" | goal < {SERVICE_GOAL_MB} MB: {'met' if rss < SERVICE_GOAL_MB else 'MISSED'}" \
            if name in services else ""
        print(f"idle {name:<18} RSS {rss:>6,.0f} MB  PSS {pss:>6,.0f} MB | "
              f"{rss / floor:4.2f}x the baseline ({procs} process(es), {threads} threads){goal}")
    rss_total = sum(row[0] for row in rows.values())
    pss_total = sum(row[1] for row in rows.values())
    print(f"idle whole stack ({len(rows)} processes): PSS {pss_total:,.0f} MB (RSS summed "
          f"{rss_total:,.0f} MB, counts shared pages once per process) | goal < "
          f"{STACK_GOAL_MB:,} MB: {'met' if pss_total < STACK_GOAL_MB else 'MISSED'}")
    print(peak_rss_line())


if __name__ == "__main__":
    main()
