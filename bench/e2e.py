"""End-to-end benchmark: DET → REDCap write-back through the whole local stack.

Drives Data Entry Triggers at steady rates (each one completes a participant's baseline in
the REDCap emulator) and prints p50/p99 DET → write-back latency and sustained
allocations/s, beside the floor measured in the same run: the same path with the
allocation and randomization handlers replaced by pass-throughs (bus hops, outbox/inbox and
REDCap calls only). Latencies come from the gateway's audit trail (DET received → written).
Then a fault window (bench/recovery.py): REDCap's API fails while saves go on, and the time
from the end of the faults to a quiet gateway is printed, with nothing lost or doubled.

    python bench/e2e.py [--rates 2,5,10,20] [--seconds 10] [--fault-seconds 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from redcap import Project  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from bench.recovery import Recovery, measure  # noqa: E402
from services.core.audit import AuditEntry  # noqa: E402
from services.core.db import make_engine  # noqa: E402
from services.core.protocol import load_protocol  # noqa: E402
from sim.cohort import Participant, make_cohort  # noqa: E402
from tailor_cli.demo.client import Gateway, issue_keys  # noqa: E402
from tailor_cli.natsd import free_port  # noqa: E402
from tailor_cli.stack import Child, LocalStack  # noqa: E402

PROTOCOL = load_protocol("protocols/perpain-pilot.yaml")
EVENT = PROTOCOL.redcap.unique_event_name(PROTOCOL.redcap.baseline_event)


@dataclass
class Figures:
    rate: float
    sent: int
    written: int
    p50: float
    p99: float
    throughput: float
    cpu_ms: float  # CPU of every process of the stack (nats-server too) per write-back


def stack_cpu(stack: LocalStack) -> float:
    """CPU seconds used so far by the stack's processes: a figure the machine's other load
    disturbs far less than latencies."""
    procs = [c.proc for c in stack.children if c.proc] + ([stack.nats.proc] if stack.nats else [])
    total = 0.0
    for proc in procs:
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def prepare(stack: LocalStack, cohort: list[Participant]) -> None:
    """Every form but the last, imported through the API (which fires no trigger, as in
    REDCap): the bench's one DET per participant then completes the baseline."""
    project = Project(stack.redcap["api_url"], stack.redcap["token"])
    rows = []
    for p in cohort:
        row = {"record_id": p.record, "redcap_event_name": EVENT}
        for instrument, values in p.forms[:-1]:
            row.update(values)
            row[f"{instrument}_complete"] = "2"
        rows.append(row)
    for start in range(0, len(rows), 200):
        project.import_records(rows[start:start + 200])


def drive(stack: LocalStack, batch: list[Participant], rate: float) -> float:
    """Complete one baseline every 1/rate seconds; saves run in parallel so a slow save (the
    emulator fires the DET before it answers) does not hold back the next one."""
    started = time.monotonic()
    base = f"{stack.redcap['url']}/emulator/projects/101"

    def save(i: int, p: Participant) -> None:
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        instrument, values = p.forms[-1]
        httpx.post(f"{base}/forms/{instrument}", timeout=30,
                   json={"values": values, "record": p.record, "event": EVENT}).raise_for_status()

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(save, range(len(batch)), batch))
    return time.monotonic() - started


def latencies(home: Path, records: set[str], wait: float = 60) -> dict[str, float]:
    engine = make_engine(f"sqlite:///{home / 'gateway.db'}")
    deadline = time.monotonic() + wait
    try:
        while True:
            with Session(engine) as session:
                rows = list(session.exec(select(AuditEntry).where(
                    AuditEntry.action.in_(["redcap.det_received", "redcap.written"]))))  # type: ignore[attr-defined]
            received = {e.record: e.at for e in rows if e.action == "redcap.det_received"}
            written = {e.record: e.at for e in rows if e.action == "redcap.written"}
            done = records & set(written)
            if done == records or time.monotonic() > deadline:
                return {r: (written[r] - received[r]).total_seconds() for r in done if r in received}
            time.sleep(0.5)
    finally:
        engine.dispose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(label: str, passthrough: bool, rates: list[float], seconds: float,
        fault_seconds: float = 0) -> tuple[list[Figures], Recovery | None]:
    home = Path(tempfile.mkdtemp(prefix=f"tailor-bench-{label}-"))
    services = ["gateway"] if passthrough else ["gateway", "allocation", "randomization"]
    # the sweep would find the forms entered without triggers: keep it out of the measurement
    env = {"TAILOR_REDCAP_SWEEP_INTERVAL_SECONDS": "3600"}
    standins = {name: free_port() for name in ("allocation", "randomization")} if passthrough else {}
    env.update({f"TAILOR_{name.upper()}_URL": f"http://127.0.0.1:{port}"
                for name, port in standins.items()})  # the gateway checks their audit heads
    stack = LocalStack(home=home, services=services, with_sims=True, extra_env=env)
    results = []
    recovery = None
    fault_rate = 2.0  # baselines completed per second during the fault window
    try:
        stack.start()
        if passthrough:
            for name, port in standins.items():
                url = f"http://127.0.0.1:{port}"
                stack.spawn(Child(name, [sys.executable, str(Path(__file__).parent / "passthrough.py"),
                                         name, str(port)], url=url, ready=f"{url}/readyz"))
            stack.wait_ready(90)
        else:
            keys = issue_keys(f"sqlite:///{home / 'gateway.db'}", ["statistician"])
            gw = Gateway(stack.url_of("gateway"), keys)
            lst = gw.call("statistician", "POST", "/api/v1/randomization/v1/lists",
                          json={"slots_per_stratum": 600})
            gw.call("statistician", "POST", f"/api/v1/randomization/v1/lists/{lst['id']}/seal")
        total = int(sum(r * seconds for r in rates)) + len(rates) + int(fault_rate * fault_seconds)
        cohort = make_cohort(PROTOCOL, eligible=total, ineligible=0, unscorable=0, withdrawn=0, seed=3)
        prepare(stack, cohort)
        offset = 0
        for rate in rates:
            batch = cohort[offset:offset + int(rate * seconds)]
            offset += len(batch)
            cpu = stack_cpu(stack)
            elapsed = drive(stack, batch, rate)
            found = latencies(home, {p.record for p in batch})
            cpu = stack_cpu(stack) - cpu
            values = list(found.values())
            span = max(elapsed, max(values, default=0) + elapsed)
            results.append(Figures(rate, len(batch), len(found), pct(values, 0.5), pct(values, 0.99),
                                   len(found) / span if span else 0.0,
                                   1000 * cpu / len(found) if found else float("nan")))
        if fault_seconds:
            batch = cohort[offset:offset + int(fault_rate * fault_seconds)]
            recovery = measure(home, stack.redcap["url"], lambda b, r: drive(stack, b, r), batch,
                               fault_rate, fault_seconds)
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    return results, recovery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="2,5,10,20")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--fault-seconds", type=float, default=20,
                        help="length of the REDCap fault window (0: none)")
    parser.add_argument("--only-faults", action="store_true",
                        help="skip the latency runs: the fault window alone")
    args = parser.parse_args()
    if args.only_faults:
        _, recovery = run("faults", False, [], args.seconds, args.fault_seconds)
        report_recovery(recovery)
        return
    rates = [float(r) for r in args.rates.split(",")]
    floor, _ = run("floor", True, rates, args.seconds)
    full, recovery = run("full", False, rates, args.seconds, args.fault_seconds)
    print(f"\nDET → REDCap write-back, {args.seconds:.0f} s per rate; floor = pass-through handlers; "
          "CPU ms = CPU of all the stack's processes (REDCap emulator, NATS) per write-back\n")
    print(f"{'DET/s':>6} | {'full p50':>9} {'p99':>7} {'alloc/s':>8} {'CPU ms':>7} | {'floor p50':>9} "
          f"{'p99':>7} {'alloc/s':>8} {'CPU ms':>7} | {'p50 ratio':>9} {'p99 ratio':>9}")
    for f, b in zip(full, floor, strict=True):
        print(f"{f.rate:>6.0f} | {f.p50:>8.2f}s {f.p99:>6.2f}s {f.throughput:>8.1f} {f.cpu_ms:>7.0f} | "
              f"{b.p50:>8.2f}s {b.p99:>6.2f}s {b.throughput:>8.1f} {b.cpu_ms:>7.0f} | "
              f"{f.p50 / b.p50:>8.1f}x {f.p99 / b.p99:>8.1f}x"
              + ("" if f.written == f.sent else f"   ({f.sent - f.written} not written in time)"))
    report_recovery(recovery)


def report_recovery(r: Recovery | None) -> None:
    if r is None:
        return
    print(f"\nREDCap API failing for {r.fault_seconds:.0f} s while {r.participants} baselines were "
          f"completed (and re-saved):\n  triggers drained {r.triggers_drained_after:.1f} s and all "
          f"written back (quiet) {r.quiet_after:.1f} s after the faults stopped; "
          f"at most {r.most_pending} triggers pending; {r.triggers_per_form:.2f} triggers per form; "
          f"lost {r.lost}, written twice {r.doubled}")


if __name__ == "__main__":
    main()
