"""Fixtures: the notifications service with a real SMTP sink, the SMS provider simulator,
a real nats-server and database, the gateway in front of the REDCap emulator (reminders
ask it for the participant's survey link), and a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redcap
from fastapi import FastAPI, Request, Response
from sqlmodel import Session

from gateway.app import SPEC as GATEWAY
from services.core.bus import Bus
from services.core.bus_contract import owner_of
from services.core.events import Allocated, Envelope, Event, FormSaved
from services.core.protocol import TrialProtocol
from services.core.settings import SERVICES
from services.notifications.app import SPEC
from services.notifications.domain import prompt_key
from services.notifications.models import ContactRow
from services.notifications.runtime import Runtime
from sim.redcap.testing import PERPAIN_REDCAP, RunningEmulator, running_emulator
from sim.sms import SmsConfig, SmsProvider, create_app, serving
from sim.smtp import SmtpSink
from tailor_cli.natsd import NatsServer
from tests.support.harness import (
    RunningService,
    eventually,
    provisioner_bus,
    running_service,
    served_service,
)
from tests.support.sealed import form_saved_for

SMS_SECRET = "test-sms-secret"
SURVEY_LINK_SECRET = "test-survey-link-secret-of-the-stack"
DET_SECRET = "test-det-secret-of-the-stack"
# Monday 6 January 2025, 09:00 UTC (10:00 in Berlin).
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


class Clock:
    """Moves with real time from wherever the test put it (so retry backoff still elapses)."""

    def __init__(self, start: datetime) -> None:
        self.set(start)

    def set(self, at: datetime) -> None:
        self._offset = at - datetime.now(UTC)

    def advance(self, **delta: float) -> None:
        self._offset += timedelta(**delta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset


def runtime_of(svc: RunningService) -> Runtime:
    rt = svc.deps
    assert isinstance(rt, Runtime)
    return rt


@dataclass
class Stack:
    """One notifications service and the outside world around it."""

    tmp: Path
    nats: NatsServer
    database_url: str
    sink: SmtpSink
    provider: SmsProvider
    clock: Clock
    bus: Bus
    redcap: RunningEmulator
    gateway_url: str
    services: list[RunningService] = field(default_factory=list)

    @property
    def svc(self) -> RunningService:
        return self.services[-1]

    @property
    def rt(self) -> Runtime:
        return runtime_of(self.svc)

    def start(self) -> AbstractAsyncContextManager[RunningService]:
        @asynccontextmanager
        async def run() -> AsyncIterator[RunningService]:
            async with running_service(SPEC, home=self.tmp, nats_url=self.nats.url,
                                       database_url=self.database_url,
                                       overrides={"clock": self.clock}) as svc:
                self.services.append(svc)
                try:
                    yield svc
                finally:
                    self.services.remove(svc)
        return run()

    def move_to(self, at: datetime) -> None:
        self.clock.set(at)
        for svc in self.services:
            runtime_of(svc).wake()

    async def publish(self, event: Event, *, record: str, event_id: str | None = None,
                      msg_id: str | None = None) -> Envelope:
        env = Envelope(subject=event.subject, producer=owner_of(event.subject, SERVICES) or "",
                       record=record,
                       data=event.model_dump(mode="json"), **({"id": event_id} if event_id else {}))
        await self.bus.publish(env.subject, env.model_dump_json().encode(), msg_id=msg_id or env.id)
        return env

    async def allocate(self, record: str, *, module: str = "PERT",
                       at: datetime = T0) -> Envelope:
        return await self.publish(Allocated(record=record, allocation_number=f"A-{record}",
                                            module=module, allocated_at=at), record=record)

    async def save(self, record: str, event: str, instrument: str, fields: dict[str, str],
                   complete: int = 2, repeat_instance: int | None = None) -> Envelope:
        env = form_saved_for("notifications", FormSaved(
            project_id=101, record=record, event=event, instrument=instrument,
            repeat_instance=repeat_instance, complete_status=complete, fields=fields,
            trigger="det"))
        await self.bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)
        return env

    def enrol_in_redcap(self, record: str) -> None:
        """The participant's record in REDCap, as site staff created it at baseline (no DET:
        the tests publish the saves notifications reads themselves)."""
        self.redcap.save_form("screening", values={"scr_eligible": "1"}, record=record,
                              event="t0_baseline_arm_1", fire_det=False)

    def wire_det(self) -> None:
        """REDCap's Data Entry Trigger to the gateway: a saved form (a submitted survey)
        reaches notifications the real way (DET → gateway re-fetch → sealed bus event)."""
        self.redcap.set_det_url(f"{self.gateway_url}/redcap/det?secret={DET_SECRET}")

    def survey_link(self, record: str, instrument: str, event: str,
                    repeat_instance: int = 1) -> str:
        """What REDCap itself gives for the participant's survey (PyCap, straight)."""
        return redcap.Project(self.redcap.api_url, self.redcap.token).export_survey_link(
            record=record, instrument=instrument, event=event, repeat_instance=repeat_instance)

    def survey_queue_link(self, record: str) -> str:
        return redcap.Project(self.redcap.api_url, self.redcap.token).export_survey_queue_link(
            record=record)

    async def save_contact(self, record: str, **overrides: str) -> Envelope:
        """Save the consent form and wait until the service has stored the details."""
        await asyncio.to_thread(self.enrol_in_redcap, record)
        before = self.sealed_contact(record)
        env = await self.save(record, "t0_baseline", "consent",
                              contact_fields(record) | overrides)
        await eventually(lambda: self.sealed_contact(record) not in (None, before))
        return env

    def sealed_contact(self, record: str) -> str | None:
        with Session(self.svc.kernel.engine) as session:
            row = session.get(ContactRow, record)
            return None if row is None else row.sealed

    async def scheduled(self, record: str) -> dict[str, Any]:
        async def ready() -> bool:
            r = await self.svc.client.get(f"/v1/schedules/{record}",
                                          headers=self.svc.as_role("coordinator"))
            return r.status_code == 200
        await eventually(ready)
        r = await self.svc.client.get(f"/v1/schedules/{record}",
                                      headers=self.svc.as_role("coordinator"))
        return r.json()  # type: ignore[no-any-return]

    async def messages(self, record: str) -> list[dict[str, Any]]:
        r = await self.svc.client.get("/v1/messages", params={"record": record},
                                      headers=self.svc.as_role("coordinator"))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def prompt_instance(protocol: TrialProtocol, record: str, key: str) -> int:
    """The diary survey instance of the prompt whose message key is `key` (the key is a
    digest of record, day and index: found by trying the diary's prompts)."""
    policy = protocol.diary_policy
    return next(policy.instance_of(day, index) for day in range(policy.days)
                for index in range(policy.prompts_per_day)
                if prompt_key(record, day, index) == key)


def contact_fields(record: str, *, language: str = "en", zone: str = "Europe/Berlin",
                   ) -> dict[str, str]:
    n = sum(map(ord, record)) % 1000
    return {
        "record_id": record, "cons_given": "1", "cons_email": f"{record}@participant.example",
        "cons_mobile": f"+49 151 1000{n:04d}", "cons_address": f"P. {record}\nHauptstraße 5\n10115 Berlin",
        "cons_language": language, "cons_timezone": zone,
        "cons_optout___email": "0", "cons_optout___sms": "0", "cons_optout___phone": "0",
        "cons_optout___letter": "0", "consent_complete": "2",
    }


def forwarder(target: Callable[[], RunningService | None]) -> FastAPI:
    """A real HTTP endpoint for the SMS simulator's callbacks, handed to the in-process
    service (which has no socket of its own in these tests)."""
    app = FastAPI()

    @app.post("/callbacks/sms")
    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower().startswith("x-signature") or k.lower() == "content-type"}
        svc = target()
        if svc is None:  # between a stop and a restart: the provider retries
            return Response(status_code=503)
        r = await svc.client.post("/v1/sms/callbacks", content=await request.body(),
                                  headers=headers)
        return Response(r.content, status_code=r.status_code)

    return app


CONTACT_KEY = "Y29udGFjdC1rZXktb2YtdGhlLXRlc3Qtc3RhY2stMzI="  # base64 of 32 bytes


@pytest.fixture
async def stack(tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch,
                request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    backend = getattr(request, "param", "sqlite")
    database_url = (str(request.getfixturevalue("postgres_url")) if backend == "postgres"
                    else f"sqlite:///{tmp_path / 'notifications.db'}")
    sink = SmtpSink()
    holder: list[Stack] = []
    def current() -> RunningService | None:
        return holder[0].services[-1] if holder and holder[0].services else None

    async with sink.serving(), serving(forwarder(current)) as callback_base:
        provider = SmsProvider(SmsConfig(seed=3, delay=(0.01, 0.03), secret=SMS_SECRET.encode(),
                                         callback_url=f"{callback_base}/callbacks/sms"))
        async with serving(create_app(provider)) as sms_url:
            for name, value in {
                "SMTP_PORT": str(sink.port), "SMS_URL": sms_url,
                "SMS_CALLBACK_SECRET": SMS_SECRET, "DISPATCH_POLL_SECONDS": "0.05",
                "RETRY_BASE_SECONDS": "0.05", "RETRY_CAP_SECONDS": "0.2",
                "MAX_RETRIES": "3", "DIARY_INTERVAL_SECONDS": "0.1",
                "GAUGE_INTERVAL_SECONDS": "0.2", "LEASE_SECONDS": "60",
            }.items():
                monkeypatch.setenv(f"TAILOR_NOTIFICATIONS_{name}", value)
            if backend == "postgres":  # a shared database: the key is configured, never minted
                monkeypatch.setenv("TAILOR_NOTIFICATIONS_CONTACT_KEY", CONTACT_KEY)
            monkeypatch.setenv("TAILOR_SURVEY_LINK_SECRET", SURVEY_LINK_SECRET)
            with running_emulator(tmp_path / "redcap.sqlite", dictionary_dir=PERPAIN_REDCAP,
                                  project_id=101) as emulator:
                monkeypatch.setenv("TAILOR_REDCAP_API_URL", emulator.api_url)
                monkeypatch.setenv("TAILOR_REDCAP_TOKEN", emulator.token)
                monkeypatch.setenv("TAILOR_REDCAP_TIMEOUT_SECONDS", "2")
                monkeypatch.setenv("TAILOR_REDCAP_DET_SECRET", DET_SECRET)
                with served_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                                    database_url=f"sqlite:///{tmp_path}/gateway.db"
                                    ) as (gateway_url, _):
                    monkeypatch.setenv("TAILOR_GATEWAY_URL", gateway_url)
                    bus = provisioner_bus(nats_server.url, "test-publisher")
                    await bus.connect(attempts=20)
                    await bus.ensure_streams()
                    st = Stack(tmp_path, nats_server, database_url, sink, provider, Clock(T0),
                               bus, emulator, gateway_url)
                    holder.append(st)
                    try:
                        yield st
                    finally:
                        await bus.close()


async def dlq_messages(bus: Bus, subject: str = "trial.dlq.notifications") -> list[bytes]:
    assert bus.js is not None
    sub = await bus.js.pull_subscribe(subject, stream="TRIAL_DLQ")
    try:
        msgs = await sub.fetch(100, timeout=1)
    except Exception:
        return []
    finally:
        await sub.unsubscribe()
    return [m.data for m in msgs]


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
