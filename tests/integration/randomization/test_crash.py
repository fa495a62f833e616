"""Kill the service (SIGKILL) while cluster_assigned events are flowing, restart it on the
same database and the same NATS store: no participant is lost or allocated twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.core import audit
from services.core.events import Allocated
from services.randomization.app import SPEC
from services.randomization.handlers import DURABLE
from services.randomization.models import AllocationRow
from services.randomization.service import Context
from tailor_cli.natsd import NatsServer, free_port
from tests.support.harness import PROTOCOL, eventually, provisioner_bus, running_service

from .support import Tap, check_exactly_once_in_order, cluster_assigned, sealed_list_direct

N = 240


def _allocated(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(AllocationRow)).one()


def _serve(home: Path, nats_url: str, database_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TAILOR_HOME": str(home), "TAILOR_NATS_URL": nats_url,
           "TAILOR_PROTOCOL_FILE": str(PROTOCOL.resolve()), "TAILOR_LOG_LEVEL": "warning",
           "TAILOR_RANDOMIZATION_DATABASE_URL": database_url, "TAILOR_OUTBOX_POLL_SECONDS": "0.1"}
    with open(home / "killed-service.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tailor_cli", "serve", "randomization",
                                 "--port", str(free_port())], env=env, stdout=log, stderr=log,
                                start_new_session=True)


async def test_killed_mid_allocation_loses_no_one_and_doubles_no_one(
        tmp_path: Path, nats_server: NatsServer, database_url: str, migrated: Engine,
        context: Context) -> None:
    list_id = sealed_list_direct(migrated, context, 100)
    records = [f"K{i:03d}" for i in range(N)]
    bus = provisioner_bus(nats_server.url, "test")
    await bus.connect(attempts=20)
    await bus.ensure_streams()

    async def flow() -> None:  # a steady stream of participants, as staff save baselines
        for i, record in enumerate(records):
            env = cluster_assigned(record, ("DYS", "ID", "AC")[i % 3])
            await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)
            await asyncio.sleep(0.004)

    process = _serve(tmp_path, nats_server.url, database_url)
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
                               database_url=database_url) as svc:
        await eventually(lambda: _allocated(migrated) == N, timeout=60)

        async def settled() -> bool:  # redeliveries of the killed process's unacked batch done
            info = await svc.kernel.bus.js.consumer_info("TRIAL", DURABLE)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(settled, timeout=40)
        async with Tap(svc.kernel.bus, Allocated.subject) as tap:
            events = await tap.read(at_least=N)
    assert Counter(e.record for e in events) == Counter(records)  # one Allocated each
    check_exactly_once_in_order(migrated, context, list_id, records)
    with Session(migrated) as session:
        assert audit.verify(session).ok
