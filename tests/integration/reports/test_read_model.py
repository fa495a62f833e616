"""The reports read model from a real nats-server: the producers' own event models go on
the bus, the service's consumer builds the flow, and a rebuild from the stream's start
gives identical figures (also into an empty database)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from services.core.audit import AuditEntry
from services.core.bus import Bus
from services.core.db import make_engine
from services.core.events import (
    Allocated,
    DiaryPromptsCounted,
    Envelope,
    Event,
    FormSaved,
    TimepointCompleted,
)
from services.core.migrations import run_migrations
from services.core.protocol import load_protocol
from services.reports.app import SPEC
from services.reports.handlers import DURABLE
from services.reports.rebuild import read_stream, rebuild
from services.reports.service import blinded_figures
from tailor_cli.natsd import NatsServer
from tests.support.harness import PROTOCOL, RunningService, eventually, provisioner_bus, running_service
from tests.support.sealed import form_saved_for, keyring

P = load_protocol(PROTOCOL)
# A diary app of the trial's own: its answers never come back to Tailor (PerPAIN's come
# back through its REDCap diary survey).
P_APP = P.model_copy(update={"diary": P.diary.model_copy(update={
    "answer_form": None, "answer_event": None, "prompt_link": "https://app.example/{token}"})})
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
TODAY = START + timedelta(days=100)
BASELINE = P.redcap.unique_event_name(P.redcap.baseline_event)


class Clock:
    def __call__(self) -> datetime:
        return TODAY


def env(event: Event, producer: str, at: datetime) -> Envelope:
    return Envelope(subject=event.subject, producer=producer, occurred_at=at,
                    record=getattr(event, "record", None), data=event.model_dump(mode="json"))


def form(record: str, instrument: str, fields: dict[str, str], at: datetime, *,
         event: str = BASELINE, complete: int = 2) -> Envelope:
    saved = FormSaved(project_id=P.redcap.project_id, record=record, event=event,
                      instrument=instrument, complete_status=complete, trigger="det",
                      fields={**fields, f"{instrument}_complete": str(complete)})
    sealed = form_saved_for("reports", saved)
    return sealed.model_copy(update={"occurred_at": at})


def enrolment(record: str, day: int, *, eligible: bool = True, consent: bool = True) -> list[Envelope]:
    at = START + timedelta(days=day)
    out = [form(record, "screening", {"scr_eligible": "1" if eligible else "0",
                                      "scr_date": at.date().isoformat()}, at)]
    if eligible:
        out.append(form(record, "consent", {"cons_given": "1" if consent else "0",
                                            "cons_date": at.date().isoformat(),
                                            "cons_email": "someone@example.org"}, at))
    if eligible and consent:
        out += [form(record, f, {}, at + timedelta(minutes=i + 1))
                for i, f in enumerate(P.redcap.baseline_forms) if f not in ("screening", "consent")]
    return out


def cohort() -> list[Envelope]:
    events: list[Envelope] = []
    for n in range(1, 13):
        record = f"R{n:03d}"
        events += enrolment(record, n, eligible=n != 11, consent=n != 12)
        if n <= 10:
            at = START + timedelta(days=n, hours=2)
            events.append(env(Allocated(record=record, allocation_number=f"PP-{n:04d}",
                                        module=P.module_keys[n % 3], allocated_at=at),
                              "randomization", at))
    # week 4 completed by five; R010 lost to follow-up; R009 withdraws (adverse event)
    for n in range(1, 6):
        done = START + timedelta(days=n + 30)
        events.append(env(TimepointCompleted(record=f"R{n:03d}", timepoint="week_4",
                                             completed_at=done, reminders_sent=n % 2),
                          "notifications", done))
    week4 = P.redcap.unique_event_name("week_4")
    gone = START + timedelta(days=35)
    events.append(form("R010", P.redcap.withdrawal_form,
                       {"wd_withdrawn": "1", "wd_date": gone.date().isoformat(), "wd_reason": "2",
                        "wd_preventable": "1"}, gone, event=week4))
    events.append(form("R009", P.redcap.withdrawal_form,
                       {"wd_withdrawn": "1", "wd_date": gone.date().isoformat(), "wd_reason": "3",
                        "wd_preventable": "0", "an_unknown_field": "ignored"}, gone, event=week4))
    return events + diary_counts()


# (record, ISO week, change in prompts sent, change in answered in time), in bus order
DIARY = [("R001", "2026-W10", 1, 0), ("R001", "2026-W10", 0, 1), ("R001", "2026-W10", 1, 0),
         ("R002", "2026-W10", 1, 0), ("R002", "2026-W11", 1, 0), ("R002", "2026-W11", 0, 1),
         ("R001", "2026-W11", 1, 0), ("R001", "2026-W11", -1, 0)]  # an unknown e-mail: not sent


def diary_counts() -> list[Envelope]:
    at = START + timedelta(days=5)
    return [env(DiaryPromptsCounted(record=r, week=w, prompts_sent=s, answered_in_time=a),
                "notifications", at + timedelta(minutes=i)) for i, (r, w, s, a) in enumerate(DIARY)]


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    b = provisioner_bus(nats_server.url, "test-producer")
    await b.connect(attempts=20)
    await b.ensure_streams()
    yield b
    await b.close()


@pytest.fixture
async def reports(tmp_path: Path, nats_server: NatsServer,
                  database_url: str) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, overrides={"clock": Clock()}) as svc:
        yield svc


async def publish(bus: Bus, events: list[Envelope]) -> None:
    for e in events:
        await bus.publish(e.subject, e.model_dump_json().encode(), msg_id=e.id)


async def flow_of(svc: RunningService, role: str = "monitor", **params: str) -> dict:
    response = await svc.client.get("/v1/flow", headers=svc.as_role(role), params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_events_from_the_bus_build_the_consort_flow(reports: RunningService, bus: Bus) -> None:
    events = cohort()
    await publish(bus, events)
    # a redelivery under another message id must not count twice
    await bus.publish(events[0].subject, events[0].model_dump_json().encode(), msg_id="again")
    await bus.publish(events[-1].subject, events[-1].model_dump_json().encode(), msg_id="again-2")

    async def all_in() -> bool:  # the duplicate, published last, has had its chance too
        flow = await flow_of(reports)
        assert bus.js is not None
        info = await bus.js.consumer_info("TRIAL", DURABLE)
        return (flow["pooled"]["lost_to_follow_up"] == 1 and flow["pooled"]["discontinued"] == 1
                and info.num_pending == 0 and info.num_ack_pending == 0)
    await eventually(all_in)
    flow = await flow_of(reports)
    assert flow["assessed"] == 12
    assert flow["excluded"] == {"not_meeting_criteria": 1, "declined": 1, "other": 0}
    assert flow["randomized"] == 10 and flow["awaiting_randomization"] == 0
    pooled = flow["pooled"]
    assert pooled["allocated"] == 10 == (pooled["lost_to_follow_up"] + pooled["discontinued"]
                                         + pooled["continuing"])
    assert pooled["lost_reasons"] == {"lost_to_follow_up": 1}
    assert pooled["discontinued_reasons"] == {"adverse_event": 1}
    assert flow["by_arm"] is None and flow["by_cluster_module"] is None

    feasibility = (await reports.client.get("/v1/feasibility", headers=reports.as_role("monitor"))).json()
    by_key = {c["key"]: c for c in feasibility}
    assert (by_key["randomized"]["numerator"], by_key["randomized"]["denominator"]) == (10, 10)
    assert by_key["randomized"]["verdict"] == "not_given"
    assert by_key["assessment_completion"]["value"] == 1.0

    retention = (await reports.client.get("/v1/retention", headers=reports.as_role("monitor"))).json()
    week4 = next(t for t in retention["timepoints"] if t["timepoint"] == "week_4")
    assert week4["complete"] == 5 and week4["lost"] == 2 and week4["overdue"] == 3
    assert {(r["stage"], r["reason"], r["preventable"]) for r in retention["reasons"]} == {
        ("lost_to_follow_up", "lost_to_follow_up", "yes"), ("discontinued", "adverse_event", "no")}

    csv = await reports.client.get("/v1/flow", headers=reports.as_role("monitor"),
                                   params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert "enrolment,assessed,all,,12" in csv.text
    svg = await reports.client.get("/v1/flow", headers=reports.as_role("monitor"),
                                   params={"format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "Randomized (n=10)" in svg.text and "Allocated:" not in svg.text

    accept = (await reports.client.get("/v1/acceptability", headers=reports.as_role("monitor"))).json()
    diary = accept["pooled"]["diary"]
    assert (diary["participants"], diary["prompts_sent"], diary["answered_in_time"]) == (2, 4, 2)
    assert accept["diary_adherence"] == 0.5 and accept["by_arm"] is None
    assert [(w["week"], w["prompts_sent"], w["answered_in_time"], w["adherence"])
            for w in diary["weeks"]] == [("2026-W10", 3, 1, 1 / 3), ("2026-W11", 1, 1, 1.0)]
    reports.kernel.protocol = P_APP  # answers are not reported back
    accept = (await reports.client.get("/v1/acceptability", headers=reports.as_role("monitor"))).json()
    assert accept["diary_adherence"] is None and accept["pooled"]["diary"]["prompts_sent"] == 4
    assert any("diary.answer_form" in n for n in accept["notes"])
    reports.kernel.protocol = P

    # the past is reproducible: as of day 5, five were randomized
    early = await flow_of(reports, as_of=(START + timedelta(days=5)).date().isoformat())
    assert early["randomized"] == 5

    from services.reports.metrics import refresh

    await asyncio.to_thread(refresh, reports.deps)
    metrics = (await reports.client.get("/metrics")).text
    assert "tailor_reports_randomized 10.0" in metrics
    assert 'tailor_reports_retention_ratio{timepoint="week_4"} 0.5' in metrics
    assert "R001" not in metrics and "PERT" not in metrics


async def test_a_rebuild_from_the_stream_gives_identical_figures(
        reports: RunningService, bus: Bus, nats_server: NatsServer, tmp_path: Path) -> None:
    await publish(bus, cohort())

    async def settled() -> bool:  # the last events published have been applied
        accept = (await reports.client.get("/v1/acceptability",
                                           headers=reports.as_role("monitor"))).json()
        diary = accept["pooled"]["diary"]
        return ((await flow_of(reports))["pooled"]["discontinued"] == 1
                and (diary["prompts_sent"], diary["answered_in_time"]) == (4, 2))
    await eventually(settled)
    live_engine = reports.kernel.engine
    stream = await read_stream(nats_server.url, credentials=nats_server.credentials())
    result = rebuild(live_engine, P, keyring("reports"), stream, as_of=TODAY.date())
    assert result.identical, result.changed
    rebuilt_diary = result.after["acceptability"]["pooled"]["diary"]
    assert (rebuilt_diary["prompts_sent"], rebuilt_diary["answered_in_time"]) == (4, 2)
    assert result.after["acceptability"]["diary_adherence"] == 0.5
    assert result.events == len(cohort()) and result.first_seq == 1
    with Session(live_engine) as session:
        audited = session.exec(select(AuditEntry).where(AuditEntry.action == "read_model.rebuilt")).all()
    assert len(audited) == 1 and json.loads(audited[0].after)["changed"] == []

    # into an empty database: the same figures as the live read model
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    run_migrations(SPEC.migrations, fresh_url)
    fresh = make_engine(fresh_url)
    try:
        rebuilt = rebuild(fresh, P, keyring("reports"), stream, as_of=TODAY.date())
        with Session(live_engine) as session:
            live = blinded_figures(session, protocol=P, as_of=TODAY.date())
        assert rebuilt.after == live
    finally:
        fresh.dispose()


async def test_bad_parameters_are_named_and_roles_enforced(reports: RunningService) -> None:
    for params, field in (({"as_of": "yesterday"}, "as_of"), ({"format": "pdf"}, "format"),
                          ({"as_of": (TODAY.date() + timedelta(days=1)).isoformat()}, "as_of")):
        response = await reports.client.get("/v1/flow", headers=reports.as_role("monitor"),
                                            params=params)
        assert response.status_code == 422 and field in response.text, response.text
    for role in ("ops", "admin", "assessor"):
        response = await reports.client.get("/v1/feasibility", headers=reports.as_role(role))
        assert response.status_code == 403, role
    assert (await reports.client.get("/v1/feasibility")).status_code == 401
    assert date.fromisoformat((await flow_of(reports))["as_of"]) == TODAY.date()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_tailor_reports_rebuild_command(bus: Bus, nats_server: NatsServer, tmp_path: Path,
                                               database_url: str) -> None:
    """The operator's command, as a process: the first rebuild fills an empty read model,
    the second finds the same figures."""
    import os
    import subprocess
    import sys

    await publish(bus, cohort())
    env = {**os.environ, "TAILOR_HOME": str(tmp_path), "TAILOR_NATS_URL": nats_server.url,
           "TAILOR_NATS_CREDS_FILE": str(nats_server.credentials()),
           "TAILOR_REPORTS_DATABASE_URL": database_url, "PYTHONPATH": os.getcwd(),
           "COLUMNS": "160"}
    argv = [sys.executable, "-m", "tailor_cli", "reports", "rebuild",
            "--as-of", TODAY.date().isoformat()]
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

    first = await asyncio.to_thread(run)
    assert first.returncode == 0, first.stderr
    assert f"replayed {len(cohort())} events from stream sequence 1" in first.stdout
    assert "figures changed" in first.stdout and "randomized" in first.stdout
    second = await asyncio.to_thread(run)
    assert second.returncode == 0, second.stderr
    assert "figures identical" in second.stdout


async def test_the_service_refuses_to_start_without_a_reports_section(
        tmp_path: Path, nats_server: NatsServer) -> None:
    import yaml

    from services.core.protocol import ProtocolError

    data = yaml.safe_load(PROTOCOL.read_text())
    del data["reports"]
    protocol_file = tmp_path / "no-reports.yaml"
    protocol_file.write_text(yaml.safe_dump(data))
    from services.core.runner import build_app
    from services.core.settings import ServiceSettings, Settings

    app = build_app(SPEC, config=Settings(home=tmp_path, nats_url=nats_server.url,
                                          protocol_file=protocol_file, log_json=False),
                    own=ServiceSettings(name="reports", database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    with pytest.raises(ProtocolError, match="reports: required key is missing"):
        async with app.router.lifespan_context(app):
            pass
