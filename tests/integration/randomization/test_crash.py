"""Kill the service (SIGKILL) while allocation requests are flowing, restart it on the same
database and the same NATS store: no participant is lost or allocated twice. For each
method: PerPAIN's personalized blocks (cluster_assigned events) and rush-mechanisms'
minimization (baseline saves sealed to randomization, decisions replayed from the seed)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.core import audit
from services.core.events import Allocated, Envelope, FormSaved
from services.core.protocol import load_protocol
from services.randomization.app import SPEC
from services.randomization.domain.baseline import levels_of
from services.randomization.handlers import CLUSTER_ASSIGNED, FORM_SAVED
from services.randomization.keys import ListKey
from services.randomization.models import AllocationRow
from services.randomization.service import Context
from tailor_cli.natsd import NatsServer, free_port
from tests.support.harness import PROTOCOL, eventually, provisioner_bus, running_service
from tests.support.sealed import form_saved_for

from .support import (
    Tap,
    check_exactly_once_in_order,
    check_minimization_reproducible,
    cluster_assigned,
    sealed_list_direct,
)

N = 240
RUSH = Path("protocols/rush-mechanisms.yaml").resolve()
BASELINE_FORMS = ("screening", "consent", "demographics", "baseline_measures")


def _rush_baseline(i: int, record: str) -> tuple[Envelope, dict[str, str]]:
    rng = random.Random(i)
    fields = {"scr_site": rng.choice("12"), "scr_pain_interference": str(rng.randint(3, 10)),
              "scr_eligible": "1", "cons_given": "1", "wd_withdrawn": "0",
              **{f"{form}_complete": "2" for form in BASELINE_FORMS}}
    saved = FormSaved(project_id=103, record=record, event="t0_baseline_arm_1",
                      instrument="baseline_measures", complete_status=2, fields=fields,
                      trigger="det")
    return form_saved_for("randomization", saved), fields


@dataclass(frozen=True)
class Flow:
    """One method's requests and what must hold once every one is done."""

    protocol: Path
    durable: str
    request: Callable[[int, str], Envelope]
    check: Callable[[Engine, Context, str, list[str]], None]


def _blocks(engine: Engine, ctx: Context, list_id: str, records: list[str]) -> None:
    check_exactly_once_in_order(engine, ctx, list_id, records)


def _minimization(engine: Engine, ctx: Context, list_id: str, records: list[str]) -> None:
    levels = {r: levels_of(ctx.protocol, _rush_baseline(i, r)[1]) for i, r in enumerate(records)}
    check_minimization_reproducible(engine, ctx, list_id, levels)


FLOWS = {
    "perpain-pilot": Flow(PROTOCOL.resolve(), CLUSTER_ASSIGNED.durable,
                          lambda i, r: cluster_assigned(r, ("DYS", "ID", "AC")[i % 3]), _blocks),
    "rush-mechanisms": Flow(RUSH, FORM_SAVED.durable, lambda i, r: _rush_baseline(i, r)[0],
                            _minimization),
}


def _allocated(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(AllocationRow)).one()


def _serve(home: Path, nats_url: str, database_url: str,
           protocol: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TAILOR_HOME": str(home), "TAILOR_NATS_URL": nats_url,
           "TAILOR_PROTOCOL_FILE": str(protocol), "TAILOR_LOG_LEVEL": "warning",
           "TAILOR_RANDOMIZATION_DATABASE_URL": database_url, "TAILOR_OUTBOX_POLL_SECONDS": "0.1"}
    with open(home / "killed-service.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tailor_cli", "serve", "randomization",
                                 "--port", str(free_port())], env=env, stdout=log, stderr=log,
                                start_new_session=True)


@pytest.mark.parametrize("name", sorted(FLOWS))
async def test_killed_mid_allocation_loses_no_one_and_doubles_no_one(
        tmp_path: Path, nats_server: NatsServer, database_url: str, migrated: Engine,
        list_key: ListKey, name: str) -> None:
    flow_of = FLOWS[name]
    context = Context(key=list_key, protocol=load_protocol(flow_of.protocol))
    list_id = sealed_list_direct(migrated, context, 100)
    records = [f"K{i:03d}" for i in range(N)]
    bus = provisioner_bus(nats_server.url, "test")
    await bus.connect(attempts=20)
    await bus.ensure_streams()

    async def flow() -> None:  # a steady stream of participants, as staff save baselines
        for i, record in enumerate(records):
            env = flow_of.request(i, record)
            await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)
            await asyncio.sleep(0.004)

    process = _serve(tmp_path, nats_server.url, database_url, flow_of.protocol)
    publishing = asyncio.create_task(flow())
    try:
        await eventually(lambda: _allocated(migrated) >= 40, timeout=60, interval=0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    at_kill = _allocated(migrated)
    await publishing
    await bus.close()
    assert at_kill < N  # the service died with work left

    nats_server.kill()  # the broker goes down too and comes back from its store
    nats_server.start()
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=flow_of.protocol) as svc:
        await eventually(lambda: _allocated(migrated) == N, timeout=60)

        async def settled() -> bool:  # redeliveries of the killed process's unacked batch done
            info = await svc.kernel.bus.js.consumer_info("TRIAL", flow_of.durable)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(settled, timeout=40)
        async with Tap(svc.kernel.bus, Allocated.subject) as tap:
            events = await tap.read(at_least=N)
    assert Counter(e.record for e in events) == Counter(records)  # one Allocated each
    flow_of.check(migrated, context, list_id, records)
    with Session(migrated) as session:
        assert audit.verify(session).ok
