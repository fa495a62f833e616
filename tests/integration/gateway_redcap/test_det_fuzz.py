"""Fuzzing the DET endpoint: whatever arrives, the answer is never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, func, select

from gateway.app import SPEC as GATEWAY
from gateway.redcap.models import RedcapTrigger
from tailor_cli.natsd import NatsServer
from tests.support.harness import running_service

SECRET = "s3cr3t-for-fuzzing"
KEYS = ["project_id", "record", "instrument", "redcap_event_name", "redcap_repeat_instance",
        "redcap_repeat_instrument", "redcap_data_access_group", "username", "consent_complete",
        "mpid_complete", "redcap_url", "project_url"]
text = st.text(max_size=40)
plausible = st.sampled_from(["101", "1", "consent", "mpid", "t0_baseline_arm_1", "week_4_arm_1",
                             "-1", "0", "2", "", "1e9", "NaN", "\x00", "ü"])
forms = st.dictionaries(st.one_of(st.sampled_from(KEYS), text), st.one_of(plausible, text),
                        max_size=12)


@pytest.fixture
async def gateway(tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAILOR_REDCAP_DET_SECRET", SECRET)
    monkeypatch.delenv("TAILOR_REDCAP_API_URL", raising=False)
    async with running_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/gw.db") as gw:
        yield gw


async def test_no_input_causes_a_server_error(gateway) -> None:
    calls: list[tuple[dict[str, str], str]] = []

    # hypothesis draws the inputs; they are replayed below inside the service's event loop
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(form=forms, secret=st.one_of(st.just(SECRET), text))
    def draw(form: dict[str, str], secret: str) -> None:
        calls.append((form, secret))

    draw()
    for form, secret in calls:
        answer = await gateway.client.post("/redcap/det", params={"secret": secret}, data=form)
        assert answer.status_code < 500, (form, answer.text)
        if answer.status_code == 200:
            assert secret == SECRET
    with Session(gateway.kernel.engine) as session:
        stored = session.exec(select(func.count()).select_from(RedcapTrigger)).one()
    assert stored <= len(calls)
