"""A design without a prediction step (rush-mechanisms: minimization by site and baseline
pain interference) is randomized from the baseline REDCap saves sealed to this service:
once per participant, only when consent, eligibility and every baseline form are there,
never for the withdrawn (a withdrawal in any later event counts, as in the allocation
service for PerPAIN), and a stratification value that is no level sends the participant
to review naming the field — no allocation, no dead letter — until a corrected save."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from sqlmodel import Session, col, select

from services.core.audit import AuditEntry
from services.core.bus import Bus
from services.core.events import Allocated, BaselineNeedsReview, FormSaved
from services.randomization.app import SPEC
from services.randomization.models import ParkedAllocation
from services.randomization.service import disclose
from tailor_cli.natsd import NatsServer
from tests.support.harness import RunningService, eventually, provisioner_bus, running_service
from tests.support.sealed import form_saved_for

from .support import Tap, allocation_rows, publish, sealed_list

RUSH = Path("protocols/rush-mechanisms.yaml").resolve()
FORMS = ("screening", "consent", "demographics", "baseline_measures")


def baseline(record: str, *, site: str = "1", interference: str = "7", consent: str = "1",
             complete: tuple[str, ...] = FORMS, withdrawn: str = "0",
             dag: str | None = None) -> FormSaved:
    fields = {"scr_site": site, "scr_pain_interference": interference, "scr_eligible": "1",
              "cons_given": consent, "wd_withdrawn": withdrawn,
              **{f"{form}_complete": "2" if form in complete else "0" for form in FORMS}}
    if dag is not None:  # a site from REDCap's data access group: no site field at all
        fields = {k: v for k, v in fields.items() if k != "scr_site"}
        fields["redcap_data_access_group"] = dag
    return FormSaved(project_id=103, record=record, event="t0_baseline_arm_1",
                     instrument="baseline_measures", complete_status=2, fields=fields,
                     trigger="det")


def withdrawal(record: str, event: str, withdrawn: str = "1") -> FormSaved:
    """The withdrawal form saved in a later event (the cut randomization receives)."""
    return FormSaved(project_id=103, record=record, event=event, instrument="withdrawal",
                     complete_status=2, fields={"wd_withdrawn": withdrawn}, trigger="det")


def _actions(svc: RunningService, record: str) -> list[str]:
    with Session(svc.kernel.engine) as session:
        return [e.action for e in session.exec(select(AuditEntry).where(
            col(AuditEntry.record) == record).order_by(col(AuditEntry.seq)))]


def _parked(svc: RunningService) -> list[str]:
    with Session(svc.kernel.engine) as session:
        return list(session.exec(select(ParkedAllocation.record)))


async def _dead_letters(bus: Bus) -> int:
    probe = provisioner_bus(bus.url, "test-dlq-probe")  # a service may not read stream info
    await probe.connect(attempts=20)
    assert probe.js is not None
    try:
        return (await probe.js.stream_info("TRIAL_DLQ")).state.messages
    finally:
        await probe.close()


async def test_complete_baselines_are_minimized_once_each(tmp_path: Path, nats_server: NatsServer,
                                                          database_url: str) -> None:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=RUSH) as svc:
        await sealed_list(svc)
        ready = [f"R{i:02d}" for i in range(16)]
        saves = [baseline(r, site="1" if i % 3 else "2", interference=str(3 + i % 8))
                 for i, r in enumerate(ready)]
        not_ready = [baseline("N01", consent="0"), baseline("N02", complete=FORMS[:3]),
                     baseline("N03", withdrawn="1")]
        async with Tap(svc.kernel.bus, Allocated.subject) as tap:
            await publish(svc.kernel.bus, [form_saved_for("randomization", s)
                                           for s in [*saves, *not_ready, *saves[:5]]])
            events = await tap.read(at_least=16)
        assert sorted(str(e.record) for e in events) == ready  # once each, nobody else
        assert all(e.data["module"] in {"CBT", "ACT"} for e in events)
        assert [e.data["allocation_number"] for e in events] == [
            f"RM-{n:04d}" for n in range(1, 17)]
        rows = allocation_rows(svc.kernel.engine)
        assert sorted(r.record for r in rows) == ready
        ctx = svc.deps.context
        decided = sorted(disclose(ctx, r).seq or 0 for r in rows)
        assert decided == list(range(1, 17))
        levels = {r.record: disclose(ctx, r).levels for r in rows}
        assert levels["R00"] == {"site": "site_2", "interference": "moderate"}
        assert levels["R01"] == {"site": "rush_chicago", "interference": "moderate"}
        assert levels["R06"] == {"site": "site_2", "interference": "high"}


async def test_a_bad_stratification_value_goes_to_review_naming_the_field(
        tmp_path: Path, nats_server: NatsServer, database_url: str) -> None:
    """A code not among the site codes, a non-number where cut points are declared, no site
    at all: each a review naming its field (once, however often it is saved), nothing
    allocated, nothing dead-lettered; the corrected save allocates."""
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=RUSH) as svc:
        await sealed_list(svc)
        bad = {"B01": baseline("B01", site="9"), "B02": baseline("B02", interference="eleventy"),
               "B03": baseline("B03", site="")}
        async with Tap(svc.kernel.bus, BaselineNeedsReview.subject) as tap:
            await publish(svc.kernel.bus, [form_saved_for("randomization", s)
                                           for s in [*bad.values(), bad["B01"]]])
            reviews = await tap.read(at_least=3)
        fields = {e.record: e.data["field"] for e in reviews}
        assert fields == {"B01": "scr_site", "B02": "scr_pain_interference", "B03": "scr_site"}
        assert len(reviews) == 3  # B01 saved twice: one review
        for e in reviews:
            assert e.data["reason"].startswith(e.data["field"])
            assert "eleventy" not in json.dumps(e.data) and "'9'" not in json.dumps(e.data)
        assert reviews[0].data["detail"] == "scr_site must be one of 1, 2 (the sites)"
        assert allocation_rows(svc.kernel.engine) == []
        assert "allocation.needs_review" in _actions(svc, "B02")
        assert await _dead_letters(svc.kernel.bus) == 0
        async with Tap(svc.kernel.bus, Allocated.subject) as tap:  # corrected in REDCap
            await publish(svc.kernel.bus, [form_saved_for("randomization", baseline(r))
                                           for r in bad])
            allocated = await tap.read(at_least=3)
        assert sorted(str(e.record) for e in allocated) == sorted(bad)


async def test_a_site_from_the_data_access_group(tmp_path: Path, nats_server: NatsServer,
                                                 database_url: str) -> None:
    """rush-mechanisms with `site: {}`: the site is the record's REDCap data access group;
    a record in no group (or in one that is no site) goes to review naming the DAG."""
    d = yaml.safe_load(RUSH.read_text())
    d["randomization"]["site"] = {}
    by_dag = tmp_path / "rush-by-dag.yaml"
    by_dag.write_text(yaml.safe_dump(d))
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=by_dag) as svc:
        await sealed_list(svc)
        async with Tap(svc.kernel.bus, BaselineNeedsReview.subject) as tap:
            await publish(svc.kernel.bus, [form_saved_for("randomization", s) for s in [
                baseline("D01", dag="site_2"), baseline("D02", dag="rush_chicago"),
                baseline("D03", dag=""), baseline("D04", dag="clinic_9")]])
            reviews = await tap.read(at_least=2)
        assert {e.record: e.data["field"] for e in reviews} == {
            "D03": "redcap_data_access_group", "D04": "redcap_data_access_group"}
        await eventually(lambda: len(allocation_rows(svc.kernel.engine)) == 2)
        sites = {r.record: (disclose(svc.deps.context, r).levels or {}).get("site")
                 for r in allocation_rows(svc.kernel.engine)}
        assert sites == {"D01": "site_2", "D02": "rush_chicago"}


async def test_a_withdrawal_in_a_later_event_stops_the_allocation(
        tmp_path: Path, nats_server: NatsServer, database_url: str) -> None:
    """As the allocation service does for PerPAIN: the withdrawal form saved in a later
    event is kept; the baseline completed afterwards allocates nobody (audited
    `withdrawal.recorded`); a mark taken back on the same form lifts it; a participant who
    was waiting for the list when they withdrew is not allocated when it is sealed."""
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=RUSH) as svc:
        bus = svc.kernel.bus
        await publish(bus, [form_saved_for("randomization", baseline("W3"))])  # no list yet
        await eventually(lambda: _parked(svc) == ["W3"])
        await publish(bus, [form_saved_for("randomization", withdrawal("W3", "month_6_arm_1"))])
        await eventually(lambda: _parked(svc) == [])
        await sealed_list(svc)  # the seal re-drives parked requests: W3 is not among them
        steps = [(withdrawal("W1", "post_treatment_arm_1"), "withdrawal.recorded"),
                 (withdrawal("W2", "month_6_arm_1"), "withdrawal.recorded"),
                 (withdrawal("W2", "month_6_arm_1", "0"), "withdrawal.retracted")]
        for step, action in steps:  # each seen before the next save, as staff would save them
            await publish(bus, [form_saved_for("randomization", step)])
            record = step.record
            await eventually(lambda r=record, a=action: a in _actions(svc, r))  # type: ignore[misc]
        async with Tap(bus, Allocated.subject) as tap:
            await publish(bus, [form_saved_for("randomization", baseline(r))
                                for r in ("W1", "W2", "OK1")])
            allocated = await tap.read(at_least=2)
        assert sorted(str(e.record) for e in allocated) == ["OK1", "W2"]
        assert sorted(r.record for r in allocation_rows(svc.kernel.engine)) == ["OK1", "W2"]
        assert "withdrawal.recorded" in _actions(svc, "W1")
        assert "allocation.created" not in _actions(svc, "W1")
        assert _actions(svc, "W2")[:2] == ["withdrawal.recorded", "withdrawal.retracted"]
        w3 = _actions(svc, "W3")
        assert w3 == ["allocation.parked", "withdrawal.recorded", "allocation.parked_dropped"]
