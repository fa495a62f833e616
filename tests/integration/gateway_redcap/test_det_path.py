"""A form saved in REDCap reaches the bus as `form_saved_for_<consumer>`, re-fetched through
the API, cut to each consumer's fields and sealed to its key."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlmodel import Session, func, select

from gateway.redcap.models import RedcapTrigger
from services.core import audit
from services.core.events import Envelope, FormSaved, FormSavedForAllocation
from services.core.sealed_events import open_form_saved
from tests.support.harness import EventTap, eventually
from tests.support.sealed import keyring

from .conftest import Stack, baseline_values

SUBJECT = FormSavedForAllocation.subject  # baseline saves: allocation receives each of them


def opened(env: Envelope) -> FormSaved:
    """What allocation reads (with its key)."""
    return open_form_saved(env, keyring("allocation"))


def _triggers(stack: Stack) -> int:
    with Session(stack.engine) as session:
        return session.exec(select(func.count()).select_from(RedcapTrigger)).one()


async def test_saved_form_reaches_the_bus_with_refetched_data(stack: Stack) -> None:
    saved = stack.redcap.save_form("demographics", values={"dem_age": "51", "dem_sex": "2"},
                                   record="1001", event="t0_baseline_arm_1")
    assert saved["det"]["status_code"] == 200
    async with EventTap(stack.nats_url, SUBJECT) as tap:
        [env] = await tap.wait_for(1)
    data = opened(env)
    assert data.record == "1001" and data.instrument == "demographics"
    assert data.event == "t0_baseline"
    assert data.fields["dem_age"] == "51"  # the data came from the API, not the trigger
    assert data.complete_status == 2
    assert env.correlation_id  # one id per participant and trigger, for the audit trail
    with Session(stack.engine) as session:
        assert audit.verify(session).ok


async def test_fifty_duplicate_triggers_publish_one_event(stack: Stack) -> None:
    saved = stack.redcap.save_form("consent", values={"cons_given": "1"}, record="1002",
                                   event="t0_baseline_arm_1")
    body = stack.redcap.det_deliveries()[-1]["payload"]
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(*(client.post(stack.det_url, data=body) for _ in range(50)))
    assert {a.status_code for a in answers} == {200}
    assert saved["det"]["status_code"] == 200
    await eventually(lambda: _pending(stack) == 0)
    async with EventTap(stack.nats_url, SUBJECT) as tap:
        await tap.wait_for(1)
        await asyncio.sleep(1.0)
        events = await tap.poll()
    assert len([e for e in events if e.data["record"] == "1002"]) == 1


def _pending(stack: Stack) -> int:
    with Session(stack.engine) as session:
        return session.exec(select(func.count()).select_from(RedcapTrigger)
                            .where(RedcapTrigger.status == "pending")).one()


async def test_redcap_errors_are_retried_and_nothing_is_lost(stack: Stack) -> None:
    stack.redcap.set_fault("error", status=500, remaining=4)
    stack.redcap.save_form("screening", values={"scr_eligible": "1"}, record="1003",
                           event="t0_baseline_arm_1")
    async with EventTap(stack.nats_url, SUBJECT) as tap:
        [env] = await tap.wait_for(1)
    assert env.data["record"] == "1003"
    with Session(stack.engine) as session:
        trigger = session.exec(select(RedcapTrigger).where(RedcapTrigger.record == "1003")).one()
    assert trigger.status == "published" and trigger.attempts > 1


@pytest.mark.parametrize("stack", [{"timeout": 0.5}], indirect=True)
async def test_redcap_timeouts_are_retried(stack: Stack) -> None:
    stack.redcap.set_fault("stall", seconds=1.5, remaining=2)
    stack.redcap.save_form("screening", values={"scr_eligible": "0"}, record="1004",
                           event="t0_baseline_arm_1")
    stack.redcap.clear_fault()
    async with EventTap(stack.nats_url, SUBJECT) as tap:
        [env] = await tap.wait_for(1, timeout=30)
    assert opened(env).fields["scr_eligible"] == "0"


@pytest.mark.parametrize("stack", [{"sweep": 1}], indirect=True)
async def test_a_lost_trigger_is_recovered_by_the_sweep(stack: Stack) -> None:
    for form, values in baseline_values().items():
        stack.redcap.save_form(form, values=values, record="1005", event="t0_baseline_arm_1",
                               fire_det=False)
    async with EventTap(stack.nats_url, SUBJECT) as tap:
        events = await tap.wait_for(4, timeout=30)
        assert {opened(e).instrument for e in events} == set(baseline_values())
        assert {opened(e).trigger for e in events} == {"sweep"}
        # A late DET for the same, unchanged data publishes nothing more.
        body = {"project_id": "101", "record": "1005", "instrument": "mpid",
                "redcap_event_name": "t0_baseline_arm_1", "mpid_complete": "2"}
        assert httpx.post(stack.det_url, data=body).status_code == 200
        await asyncio.sleep(2.5)  # a sweep or two more
        assert len(await tap.poll()) == 4


@pytest.mark.parametrize(("query", "body", "status", "field"), [
    ("secret=wrong", {"project_id": "101", "record": "1", "instrument": "consent",
                      "redcap_event_name": "t0_baseline_arm_1"}, 403, "secret"),
    ("", {"project_id": "101", "record": "1", "instrument": "consent",
          "redcap_event_name": "t0_baseline_arm_1"}, 403, "secret"),
    (None, {"project_id": "999", "record": "1", "instrument": "consent",
            "redcap_event_name": "t0_baseline_arm_1"}, 403, "project_id"),
    (None, {"project_id": "101", "instrument": "consent",
            "redcap_event_name": "t0_baseline_arm_1"}, 422, "record"),
    (None, {"project_id": "101", "record": "1", "instrument": "favourite_colour",
            "redcap_event_name": "t0_baseline_arm_1"}, 422, "instrument"),
    (None, {"project_id": "101", "record": "1", "instrument": "consent",
            "redcap_event_name": "week_99_arm_1"}, 422, "redcap_event_name"),
    (None, {"project_id": "101", "record": "1", "instrument": "consent"}, 422, "redcap_event_name"),
])
def test_bad_triggers_are_refused_and_nothing_is_stored(stack: Stack, query, body, status, field) -> None:
    url = stack.det_url if query is None else f"{stack.gateway_url}/redcap/det?{query}"
    answer = httpx.post(url, data=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json().get("field") == field or field in answer.text
    assert _triggers(stack) == 0
