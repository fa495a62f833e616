"""A participant completing a REDCap survey reaches the bus like a form saved by staff: the
emulator's survey page fires the DET as REDCap does ("[survey respondent]"), and the gateway
re-fetches the record and publishes the save (sealed to notifications) with the form complete."""

from __future__ import annotations

from dataclasses import replace

import httpx
import redcap

from services.core.events import FormSavedForNotifications
from services.core.sealed_events import open_form_saved
from tests.support.harness import EventTap
from tests.support.sealed import keyring

from .conftest import PROJECT_ID, Stack

SUBJECT = FormSavedForNotifications.subject
EVENT = "week_4_arm_1"


async def test_a_completed_survey_is_published_as_a_completed_form(stack: Stack) -> None:
    store = stack.redcap.emulator.store
    design = store.project(PROJECT_ID).design  # a REDCap admin enables pgic as a survey
    store.save_design(PROJECT_ID, replace(design, surveys={"pgic": {"title": "PGIC"}}))
    project = redcap.Project(stack.redcap.api_url, stack.redcap.token)
    project.import_records([{"record_id": "2001", "redcap_event_name": "t0_baseline_arm_1",
                             "dem_age": "40"}])
    link = project.export_survey_link(record="2001", instrument="pgic", event=EVENT)
    answer = httpx.post(link, data={"pgic_rating": "2"})
    assert answer.status_code == 200
    [delivery] = [d for d in stack.redcap.det_deliveries() if d["payload"]["record"] == "2001"]
    assert delivery["payload"]["username"] == "[survey respondent]"
    assert delivery["status_code"] == 200
    keys = keyring("notifications")
    async with EventTap(stack.nats_url, SUBJECT) as tap:  # the start-up sweep may publish too
        env = await tap.first(lambda e: open_form_saved(e, keys).instrument == "pgic")
    saved = open_form_saved(env, keys)
    assert (saved.record, saved.instrument, saved.event) == ("2001", "pgic", "week_4")
    assert saved.complete_status == 2 and saved.fields["pgic_complete"] == "2"
