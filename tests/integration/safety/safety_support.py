"""Builders and probes for the safety integration tests (a module name no other folder uses)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from services.core import audit
from services.core.audit import AuditEntry
from services.core.bus import Bus
from services.core.events import Envelope, Event, FormSaved
from services.core.internal_token import (
    HEADER,
    Caller,
    InternalTokenError,
    InternalTokenVerifier,
    ensure_keypair,
    load_public_key,
)
from services.core.roles import Role
from tests.support.harness import RunningService, token_headers
from tests.support.sealed import form_saved_for

AWARE = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)  # awareness of the test events
START = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # the frozen clock's first reading


@dataclass
class FrozenClock:
    at: datetime = START

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


def criteria(**true: bool) -> dict[str, bool]:
    base = dict.fromkeys(("death", "life_threatening", "hospitalisation", "disability",
                          "congenital_anomaly", "medically_important"), False)
    base.update(true)
    return base


def ae_body(**overrides: Any) -> dict[str, Any]:
    """A valid, non-serious API body; override any field."""
    body: dict[str, Any] = {
        "participant": "PP-001", "onset_date": "2025-03-09",
        "awareness_time": AWARE.isoformat(), "verbatim_term": "panic attack after session",
        "severity": "moderate", "seriousness": criteria(), "relatedness": "possibly",
        "outcome": "recovered", "action_taken": "none", "reporter": "Dr. Example",
    }
    body.update(overrides)
    return body


def sae_body(**overrides: Any) -> dict[str, Any]:
    """Serious (hospitalisation), probably related, unexpected: a SUSAR under PerPAIN's rules."""
    return ae_body(**{"seriousness": criteria(hospitalisation=True), "severity": "severe",
                      "relatedness": "probably", "outcome": "recovering", **overrides})


def ae_form(**overrides: str) -> dict[str, str]:
    """REDCap fields of a serious AE instance (codes as REDCap exports them; Berlin time)."""
    fields = {
        "ae_onset_date": "2025-03-09", "ae_aware_datetime": "2025-03-10 09:00",
        "ae_term": "fainted during session", "ae_severity": "3", "ae_grade": "",
        "ae_serious": "1", "ae_sc_death": "0", "ae_sc_life_threat": "0", "ae_sc_hosp": "1",
        "ae_sc_disability": "0", "ae_sc_congenital": "0", "ae_sc_med_important": "0",
        "ae_related": "2", "ae_expected": "", "ae_outcome": "2", "ae_action": "3",
        "ae_reporter": "Site nurse", "ae_followup_reason": "", "adverse_event_complete": "2",
    }
    fields.update(overrides)
    return fields


def form_saved(instrument: str, fields: dict[str, str], *, record: str = "PP-001",
               event: str = "week_4_arm_1", instance: int | None = 1,
               complete: int = 2) -> FormSaved:
    return FormSaved(project_id=101, record=record, event=event, instrument=instrument,
                     repeat_instance=instance, complete_status=complete, fields=fields,
                     trigger="det")


def envelope(event: Event | FormSaved, *, record: str | None = None,
             producer: str = "gateway") -> Envelope:
    if isinstance(event, FormSaved):  # the gateway seals each save to its consumer
        return form_saved_for("safety", event)
    return Envelope(subject=event.subject, producer=producer, record=record,
                    data=event.model_dump(mode="json"))


class BusProbe:
    """Publishes envelopes as other services would and reads what safety published."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._n = 0

    async def send(self, env: Envelope, *, msg_id: str | None = None) -> Envelope:
        self._n += 1
        await self.bus.publish(env.subject, env.model_dump_json().encode(),
                               msg_id=msg_id or f"{env.id}-{self._n}")
        return env

    async def published(self, subject: str, *, settle: float = 0.5) -> list[Envelope]:
        """Every message on `subject` so far (waits `settle` seconds for stragglers)."""
        assert self.bus.js is not None
        sub = await self.bus.js.pull_subscribe(subject, stream="TRIAL")
        found: list[Envelope] = []
        try:
            while True:
                msgs = await sub.fetch(100, timeout=settle)
                for m in msgs:
                    await m.ack()
                found += [Envelope.model_validate_json(m.data) for m in msgs]
        except TimeoutError:
            pass
        finally:
            await sub.unsubscribe()
        return found


def headers_for(home: Path, role: Role | str, *, subject: str = "tester",
                audience: str | list[str] = "safety") -> dict[str, str]:
    """Signed per request by the test client (tokens are good for one request)."""
    return token_headers(home, audience, role, subject)


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def audit_entries(svc: RunningService) -> list[AuditEntry]:
    with Session(svc.kernel.engine) as session:
        return list(session.exec(select(AuditEntry).order_by(AuditEntry.seq)))  # type: ignore[arg-type]


def assert_audit_verified_and_blind(svc: RunningService) -> list[str]:
    """The chain verifies and no entry names an arm; returns the actions, in order."""
    with Session(svc.kernel.engine) as session:
        report = audit.verify(session)
    assert report.ok, report.problem
    arms = [a.key for a in svc.kernel.protocol.arms]
    entries = audit_entries(svc)
    for e in entries:
        text = json.dumps([e.action, e.entity_id, e.before, e.after, e.reason]).lower()
        assert '\\"arm\\"' not in text and not any(a.lower() in text for a in arms), e.action
    return [e.action for e in entries]


# --- a stand-in for the randomization service's unblinded route ---------------------------


@dataclass
class FakeRandomization:
    """Plays `GET /v1/allocations/unblinded`, checking the forwarded internal token."""

    url: str = ""
    allocations: list[dict[str, Any]] = field(default_factory=list)
    verifier: InternalTokenVerifier | None = None
    callers: list[Caller] = field(default_factory=list)

    def trust(self, home: Path) -> None:
        keys = ensure_keypair(home / "keys")
        self.verifier = InternalTokenVerifier(load_public_key(keys.public_key.read_bytes()),
                                              audience="randomization")

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/allocations/unblinded")
        def unblinded(request: Request) -> JSONResponse:
            assert self.verifier is not None
            try:
                caller = self.verifier.verify(request.headers.get(HEADER, ""))
            except InternalTokenError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=401)
            if caller.role is not Role.DSMB:
                return JSONResponse({"detail": "unblinded roles only"}, status_code=403)
            self.callers.append(caller)
            return JSONResponse(self.allocations)

        return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_thread(fake: FakeRandomization) -> Iterator[FakeRandomization]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=5)


# HTTP-mapping tests that exercise no database-specific behaviour run on SQLite only,
# which keeps the suite within its time budget; persistence-heavy tests run on both.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
