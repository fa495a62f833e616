"""Audit heads and their witnesses, with a real bus: a service's head goes out after each
append batch; the gateway keeps only heads the service's chain really holds (a forged
head moves nothing); entries deleted after their head went out are reported truncated,
for a service's chain and for the gateway's own, which the services witness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.audit_witness import HEADS_REFUSED
from gateway.auth.key_repository import create_key
from gateway.models import WitnessedHead
from gateway.settings import GatewaySettings
from services.core import audit, audit_witness
from services.core.audit import AuditEntry
from services.core.db import unit_of_work
from services.core.events import AuditHead, Envelope
from services.core.internal_token import InternalTokenSigner
from services.core.roles import Role
from services.core.runner import ServiceSpec
from services.core.settings import ServiceSettings
from tailor_cli.audit_cli import Verdict, verify_offline
from tailor_cli.main import app
from tailor_cli.natsd import NatsServer
from tests.support import harness
from tests.support.harness import RunningService, eventually, provisioner_bus, running_service

ALLOCATION_LIKE = ServiceSpec(name="allocation", migrations=Path("services/allocation/migrations"))


@dataclass
class Pair:
    service: RunningService
    gateway: FastAPI
    client: httpx.AsyncClient
    monitor: dict[str, str]

    @property
    def gateway_engine(self) -> Engine:
        return self.gateway.state.kernel.engine  # type: ignore[no-any-return]

    def witnessed(self) -> tuple[int, str] | None:
        with Session(self.gateway_engine) as session:
            row = session.get(WitnessedHead, "allocation")
            return None if row is None else (row.length, row.head_hash)

    async def verdicts(self) -> dict[str, dict[str, Any]]:
        answer = await self.client.get("/api/v1/audit/verify", headers=self.monitor)
        assert answer.status_code == 200, answer.text
        return {v["service"]: v for v in answer.json()["services"]}


def _head(engine: Engine) -> tuple[int, str]:
    with Session(engine) as session:
        report = audit.verify(session)
    return report.length, report.head_hash


def _append(engine: Engine, count: int) -> None:
    with unit_of_work(engine) as session:
        for n in range(count):
            audit.append(session, actor="test", role="system", action="thing.done",
                         entity_type="thing", entity_id=str(n))


def _delete_newest(engine: Engine, keep: int) -> None:
    """What an intruder with database access does: drop the guard, delete the tail."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_entry_no_delete")
        conn.exec_driver_sql(f"DELETE FROM audit_entry WHERE seq > {keep}")


@asynccontextmanager
async def pair(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Pair]:
    async with running_service(ALLOCATION_LIKE, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/allocation.db") as service:
        gateway = create_app(
            config=harness.test_settings(tmp_path, nats_server.url),
            own=ServiceSettings(name="gateway", database_url=f"sqlite:///{tmp_path}/gateway.db"),
            gateway=GatewaySettings(service_urls={"allocation": "http://allocation"}),
            transports={"allocation": httpx.ASGITransport(app=service.app)})
        async with gateway.router.lifespan_context(gateway):
            def monitor_key() -> str:
                with unit_of_work(gateway.state.kernel.engine) as session:
                    return create_key(session, name="monitor", role=Role.MONITOR,
                                      created_by="test").token

            token = await asyncio.to_thread(monitor_key)  # never block the loop on SQLite
            transport = httpx.ASGITransport(app=gateway)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield Pair(service, gateway, client, {"Authorization": f"Bearer {token}"})


async def test_a_forged_head_does_not_move_the_witness(tmp_path: Path, nats_server: NatsServer) -> None:
    async with pair(tmp_path, nats_server) as p:
        refused = HEADS_REFUSED.labels("allocation")
        before = refused._value.get()
        forged = AuditHead(service="allocation", length=10**12, head_hash="f" * 64, at=datetime.now(UTC))
        admin = provisioner_bus(nats_server.url)
        await admin.connect(attempts=20)
        subject = AuditHead.subject.format(service="allocation")
        envelope = Envelope(subject=subject, producer="allocation", data=forged.model_dump(mode="json"))
        await admin.publish(subject, envelope.model_dump_json().encode(), msg_id="forged-head")
        await admin.close()
        await asyncio.to_thread(_append, p.service.kernel.engine, 2)  # real heads follow the forged one
        await eventually(lambda: refused._value.get() == before + 1)
        await eventually(lambda: asyncio.to_thread(lambda: p.witnessed() == _head(p.service.kernel.engine)))
        verdict = (await p.verdicts())["allocation"]
        assert verdict["ok"] is True and verdict["truncated"] is False, verdict


async def test_deleting_a_services_newest_entries_is_detected(tmp_path: Path,
                                                              nats_server: NatsServer) -> None:
    async with pair(tmp_path, nats_server) as p:
        engine = p.service.kernel.engine
        await asyncio.to_thread(_append, engine, 3)
        # Announced at once (the backstop timer is a minute): the witness has the new head.
        await eventually(lambda: asyncio.to_thread(lambda: p.witnessed() == _head(engine)))
        seen = await asyncio.to_thread(p.witnessed)
        assert seen is not None
        length = seen[0]
        await asyncio.to_thread(_delete_newest, engine, length - 2)
        verdict = (await p.verdicts())["allocation"]
        assert verdict["ok"] is False and verdict["truncated"] is True, verdict
        assert verdict["length"] < verdict["witnessed"]["length"] == length
        # `tailor audit verify`, from the database files
        offline = (await asyncio.to_thread(_offline, tmp_path))["allocation"]
        assert offline.truncated and offline.problem and offline.witnessed.length == length


async def test_the_gateways_own_chain_is_witnessed_and_its_truncation_detected(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with pair(tmp_path, nats_server) as p:
        await asyncio.to_thread(_append, p.gateway_engine, 3)

        def witnessed_by_the_service() -> bool:
            with Session(p.service.kernel.engine) as session:
                seen = audit_witness.witnessed(session, "gateway")
            return seen is not None and (seen.length, seen.head_hash) == _head(p.gateway_engine)

        await eventually(lambda: asyncio.to_thread(witnessed_by_the_service))
        assert (await p.verdicts())["gateway"]["ok"] is True
        length, _hash = await asyncio.to_thread(_head, p.gateway_engine)
        await asyncio.to_thread(_delete_newest, p.gateway_engine, length - 1)
        verdict = (await p.verdicts())["gateway"]
        assert verdict["ok"] is False and verdict["truncated"] is True, verdict
        assert verdict["witnessed"]["length"] == length
        offline = await asyncio.to_thread(_offline, tmp_path)
        assert offline["gateway"].truncated and offline["gateway"].witnessed.length == length
        assert offline["allocation"].problem is None


async def test_a_gateway_head_not_signed_by_the_gateway_does_not_move_a_services_witness(
        tmp_path: Path, nats_server: NatsServer) -> None:
    """The provisioner can publish on the gateway's subject; without the gateway's key its
    head (unsigned, or signed with another key) is refused and the real heads still land."""
    async with pair(tmp_path, nats_server) as p:
        await asyncio.to_thread(_append, p.gateway_engine, 2)

        def service_witness() -> tuple[int, str] | None:
            with Session(p.service.kernel.engine) as session:
                seen = audit_witness.witnessed(session, "gateway")
            return None if seen is None else (seen.length, seen.head_hash)

        await eventually(lambda: asyncio.to_thread(
            lambda: service_witness() == _head(p.gateway_engine)))
        real = await asyncio.to_thread(service_witness)
        stranger = InternalTokenSigner(Ed25519PrivateKey.generate())
        unsigned = AuditHead(service="gateway", length=10**12, head_hash="f" * 64,
                             at=datetime.now(UTC))
        wrong = unsigned.model_copy(update={
            "length": 10**12 + 1, "signature": stranger.sign_detached(unsigned.head_message())})
        admin = provisioner_bus(nats_server.url)
        await admin.connect(attempts=20)
        subject = AuditHead.subject.format(service="gateway")
        for n, forged in enumerate((unsigned, wrong)):
            envelope = Envelope(subject=subject, producer="gateway",
                                data=forged.model_dump(mode="json"))
            await admin.publish(subject, envelope.model_dump_json().encode(), msg_id=f"forged-{n}")
        await admin.close()
        await asyncio.to_thread(_append, p.gateway_engine, 1)  # a real head after the forged ones
        await eventually(lambda: asyncio.to_thread(
            lambda: service_witness() == _head(p.gateway_engine)))
        seen = await asyncio.to_thread(service_witness)
        assert real is not None and seen is not None and real[0] < seen[0] < 10**12
        with Session(p.service.kernel.engine) as session:
            rows = session.exec(select(AuditEntry).where(
                AuditEntry.action == audit_witness.WITNESSED)).all()
            recorded = [json.loads(e.after or "{}")["length"] for e in rows]
        assert all(length < 10**12 for length in recorded), recorded


def _checkpoints(engine: Engine) -> list[audit.AuditCheckpoint]:
    with Session(engine) as session:
        return list(session.exec(select(audit.AuditCheckpoint)))


async def test_verifications_through_the_gateway_start_from_signed_checkpoints(
        tmp_path: Path, nats_server: NatsServer) -> None:
    """The service signs its checkpoints with a key derived from its bus key, the gateway
    with one derived from its token-signing key; a forged checkpoint fails the verdict,
    and `full=true` re-hashes past the checkpoints."""
    async with pair(tmp_path, nats_server) as p:
        engine, key = p.service.kernel.engine, p.service.kernel.audit_key
        gateway_key = p.gateway.state.kernel.audit_key
        assert key is not None and gateway_key is not None and key.key_id != gateway_key.key_id
        await asyncio.to_thread(_append, engine, 5)
        await asyncio.to_thread(_append, p.gateway_engine, 2)
        first = await p.verdicts()
        assert first["allocation"]["ok"] and first["gateway"]["ok"], first
        made = await asyncio.to_thread(_checkpoints, engine)
        assert made and all(c.key_id == key.key_id and key.holds(c.seq, c.hash, c.signature)
                            for c in made)
        assert max(c.seq for c in made) == first["allocation"]["length"]
        own = await asyncio.to_thread(_checkpoints, p.gateway_engine)
        assert own and all(gateway_key.holds(c.seq, c.hash, c.signature) for c in own)
        answer = await p.client.get("/api/v1/allocation/v1/audit/verify", headers=p.monitor)
        assert answer.status_code == 200, answer.text  # the service's own verification, proxied
        direct = answer.json()
        assert direct["ok"] and direct["checkpoint_seq"] == direct["length"], direct
        assert direct["rows_read"] == 0, direct  # nothing new since the checkpoint
        newest = max(made, key=lambda c: c.seq)

        def forge() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO audit_checkpoint (seq, hash, key_id, signature, at) VALUES "
                    f"({newest.seq + 1000}, '{newest.hash}', '{key.key_id}', '{'0' * 64}', "
                    "CURRENT_TIMESTAMP)")

        await asyncio.to_thread(forge)
        forged = (await p.verdicts())["allocation"]
        assert forged["ok"] is False and "signature" in forged["problem"], forged
        full = await p.client.get("/api/v1/audit/verify?full=true", headers=p.monitor)
        assert full.status_code == 200, full.text
        verdicts = {v["service"]: v for v in full.json()["services"]}
        assert verdicts["allocation"]["ok"] is True, verdicts  # the chain itself is intact


def test_audit_verify_command_exit_status(tmp_path: Path) -> None:
    """No witnessed head yet: every readable chain is ok, exit 0."""
    from services.core.migrations import run_migrations

    run_migrations(Path("gateway/migrations"), f"sqlite:///{tmp_path}/gateway.db")
    run_migrations(Path("services/allocation/migrations"), f"sqlite:///{tmp_path}/allocation.db")
    result = CliRunner().invoke(app, ["audit", "verify", *_args(tmp_path)])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, ["audit", "verify", "--database", "billing=x"]).exit_code == 2


def _args(home: Path) -> list[str]:
    return [arg for name in ("gateway", "allocation")
            for arg in ("--database", f"{name}=sqlite:///{home}/{name}.db")]


def _offline(home: Path) -> dict[str, Verdict]:
    urls = {name: f"sqlite:///{home}/{name}.db" for name in ("gateway", "allocation")}
    return {v.chain: v for v in verify_offline(urls)}
