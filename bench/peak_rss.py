"""Peak resident memory of a benchmark, and a runner that prints it for any benchmark.

As a module: `peak_rss_line()` names this process's peak RSS and that of the largest child
it waited for (nats-server, service processes). As a script, `make bench` runs every
benchmark through it, so each prints its peak RSS without knowing about it:

    .venv/bin/python bench/peak_rss.py bench/bus.py [its arguments]

`ru_maxrss` is the high-water mark of one process (Linux: KiB), not a sum over processes.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys


def _mib(kib: int) -> float:
    return kib / 1024


def peak_rss_line(label: str = "this benchmark") -> str:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    line = f"peak RSS of {label}: {_mib(own):,.0f} MiB"
    if children:
        line += f" (largest child process: {_mib(children):,.0f} MiB)"
    return line


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    script = sys.argv[1]
    code = subprocess.call([sys.executable, *sys.argv[1:]], env=os.environ.copy())
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the benchmark and its own
    print(f"peak RSS of {script} (largest process it ran): {_mib(peak):,.0f} MiB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return code


if __name__ == "__main__":
    sys.exit(main())
