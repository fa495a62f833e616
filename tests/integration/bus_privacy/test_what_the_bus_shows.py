"""What anyone reading `trial.>` (or an outbox at rest) learns from a real flow: REDCap
emulator → gateway → allocation → randomization, with notifications and safety consuming,
all on one real nats-server. Nothing that gives the arm (cluster, MPI-D answers), no
contact detail and no adverse-event text; and every consumer still does its work."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlmodel import Session, select

from gateway.app import SPEC as GATEWAY
from services.allocation.app import SPEC as ALLOCATION
from services.allocation.models import ParticipantPrediction
from services.core.bus import STREAM
from services.core.db import make_engine
from services.core.events import Allocated
from services.core.outbox import OutboxMessage
from services.notifications.app import SPEC as NOTIFICATIONS
from services.notifications.models import ContactRow
from services.randomization.app import SPEC as RANDOMIZATION
from services.randomization.keys import ENV_KEY, ENV_KEY_FILE
from services.safety.app import SPEC as SAFETY
from services.safety.models import SafetyCase
from sim.redcap.testing import PERPAIN_REDCAP, RunningEmulator, running_emulator
from tailor_cli.natsd import NatsServer
from tests.integration.randomization.support import sealed_list
from tests.support.harness import EventTap, eventually, provisioner_bus, running_service, served_service

RECORD = "3001"
CONTACT = {"cons_given": "1", "cons_date": "2025-03-01", "cons_email": "ada.private@example.org",
           "cons_mobile": "+491701234567", "cons_address": "Geheimweg 7\n10115 Berlin",
           "cons_language": "en", "cons_timezone": "Europe/Berlin", "cons_optout___letter": "1"}
AE_TERM = "fainted in the waiting room"
DET_SECRET = secrets.token_urlsafe(24)


@pytest.fixture
def redcap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with running_emulator(tmp_path / "redcap.sqlite", dictionary_dir=PERPAIN_REDCAP,
                          project_id=101) as emulator:
        monkeypatch.setenv("TAILOR_REDCAP_API_URL", emulator.api_url)
        monkeypatch.setenv("TAILOR_REDCAP_TOKEN", emulator.token)
        monkeypatch.setenv("TAILOR_REDCAP_SWEEP_INTERVAL_SECONDS", "3600")
        monkeypatch.setenv("TAILOR_REDCAP_DET_SECRET", DET_SECRET)
        monkeypatch.delenv(ENV_KEY_FILE, raising=False)
        monkeypatch.setenv(ENV_KEY, base64.b64encode(secrets.token_bytes(32)).decode())
        yield emulator


def _baseline(emulator: RunningEmulator) -> dict[str, str]:
    """A complete, consented, eligible baseline with varied MPI-D answers."""
    mpid = {f"mpid_{p}_{i}": str((p * 7 + i * 3) % 7)
            for p, n in ((1, 22), (2, 11), (3, 18)) for i in range(1, n + 1)}
    forms = {"screening": {"scr_eligible": "1"}, "consent": CONTACT,
             "demographics": {"dem_age": "47", "dem_sex": "1"}, "mpid": mpid,
             "hads": {"hads_1": "1"}, "panas": {"panas_interested": "3"}, "odi": {"odi_1": "2"}}
    for form, values in forms.items():
        emulator.save_form(form, values=values, record=RECORD, event="t0_baseline_arm_1")
    return mpid


def _ae(emulator: RunningEmulator) -> None:
    values = {"ae_onset_date": "2025-03-09", "ae_aware_datetime": "2025-03-10 09:00",
              "ae_term": AE_TERM, "ae_severity": "2", "ae_serious": "0", "ae_related": "2",
              "ae_outcome": "1", "ae_action": "1", "ae_reporter": "Site nurse"}
    emulator.save_form("adverse_event", values=values, record=RECORD, event="week_4_arm_1",
                       repeat_instance=1)


async def _everything_on_the_bus(nats_url: str) -> list[bytes]:
    bus = provisioner_bus(nats_url, "eavesdropper")  # reads every subject
    await bus.connect(attempts=20)
    assert bus.js is not None
    info = await bus.js.stream_info(STREAM)
    sub = await bus.js.pull_subscribe("trial.>", stream=STREAM, config=ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL))
    seen: list[bytes] = []
    while len(seen) < info.state.messages:
        seen += [m.data for m in await sub.fetch(100, timeout=5)]
    await bus.close()
    return seen


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def _leaks(raw: bytes, *, secrets_: set[str], clusters: set[str]) -> list[str]:
    text = raw.decode()
    found = [s for s in secrets_ if s in text]
    found += [s for s in _strings(json.loads(text)) if s in clusters]  # whole values only
    found += [key for key in ("cluster", "probabilities", "fields", "mpid_") if f'"{key}' in text]
    return found


async def test_the_bus_and_the_outboxes_show_no_arm_no_cluster_no_contact(
        tmp_path: Path, nats_server: NatsServer, redcap: RunningEmulator) -> None:
    url = nats_server.url

    def db(name: str) -> str:
        return f"sqlite:///{tmp_path / (name + '.db')}"

    async with AsyncExitStack() as stack:
        randomization = await stack.enter_async_context(running_service(
            RANDOMIZATION, home=tmp_path, nats_url=url, database_url=db("randomization")))
        await sealed_list(randomization)
        await stack.enter_async_context(running_service(
            ALLOCATION, home=tmp_path, nats_url=url, database_url=db("allocation")))
        await stack.enter_async_context(running_service(
            NOTIFICATIONS, home=tmp_path, nats_url=url, database_url=db("notifications")))
        await stack.enter_async_context(running_service(
            SAFETY, home=tmp_path, nats_url=url, database_url=db("safety")))
        gateway_url, _ = stack.enter_context(served_service(
            GATEWAY, home=tmp_path, nats_url=url, database_url=db("gateway")))
        redcap.set_det_url(f"{gateway_url}/redcap/det?secret={DET_SECRET}")

        mpid = _baseline(redcap)
        _ae(redcap)
        async with EventTap(url, Allocated.subject) as tap:
            [allocated] = await tap.wait_for(1, timeout=60)
        assert allocated.record == RECORD and allocated.data["module"]  # the flow ran

        engines = {n: make_engine(db(n)) for n in ("allocation", "notifications", "safety",
                                                    "gateway", "randomization")}

        def stored(name: str, table: type) -> list:
            with Session(engines[name]) as session:
                return list(session.exec(select(table)))

        await eventually(lambda: stored("notifications", ContactRow))  # contacts reached it
        await eventually(lambda: stored("safety", SafetyCase))  # the AE reached safety
        [prediction] = stored("allocation", ParticipantPrediction)

        clusters = {c.key for c in randomization.kernel.protocol.clusters}
        private = {v for k, v in CONTACT.items() if k.startswith("cons_") and len(v) > 3} | {
            "Geheimweg", AE_TERM}
        messages = await _everything_on_the_bus(url)
        assert len(messages) >= 5
        leaks = {i: _leaks(m, secrets_=private, clusters=clusters) for i, m in enumerate(messages)}
        assert not any(leaks.values()), leaks
        assert prediction.cluster in clusters  # it exists, only not on the bus
        assert not any(f'"{k}":"{v}"' in m.decode() for m in messages for k, v in mpid.items())

        for name in ("gateway", "allocation", "randomization", "notifications", "safety"):
            for row in stored(name, OutboxMessage):  # at rest, sent or not
                assert not _leaks(row.envelope.encode(), secrets_=private, clusters=clusters)
        for engine in engines.values():
            engine.dispose()

