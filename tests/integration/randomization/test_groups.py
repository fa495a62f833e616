"""Group randomization in the service, on SQLite and PostgreSQL: members join from their
baseline saves (once each, whatever is redelivered), a group is closed once however many
close it at the same moment, every member is allocated once to the group's arm, a late
joiner waits for review, the unsealed list accounts for every group, and blinded roles
never see an arm (REST, bus, logs, audit)."""

from __future__ import annotations

import io
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.core import audit
from services.core.audit import AuditEntry
from services.core.db import unit_of_work
from services.core.errors import Conflict, DomainError, InvalidInput, NotFound
from services.core.events import Allocated, FormSaved
from services.core.logging import configure_logging
from services.core.outbox import OutboxMessage
from services.randomization import groups, lists
from services.randomization.app import SPEC
from services.randomization.domain.group import JoinOutcome, slot_user
from services.randomization.keys import ListKey
from services.randomization.lists import UnsealedList
from services.randomization.models import GroupMember, RandomizationGroup
from services.randomization.service import (
    Actor,
    AllocationRequest,
    Context,
    Disclosure,
    allocate,
    disclose,
)
from tailor_cli.natsd import NatsServer
from tests.support.designs import group_trial, group_trial_data
from tests.support.harness import RunningService, eventually, running_service
from tests.support.sealed import form_saved_for

from .support import (
    STATISTICIAN,
    Tap,
    allocation_rows,
    opened_slots,
    publish,
    sealed_list,
    sealed_list_direct,
)

COORDINATOR = Actor("coord-1", "coordinator")
MANAGER = Actor("sm-1", "study_manager")
BUS = Actor("event:gateway", "system")
FORMS = ("screening", "consent", "demographics", "mpid", "hads", "panas", "odi")


@pytest.fixture
def grouped(list_key: ListKey) -> Context:
    return Context(key=list_key, protocol=group_trial(min_group_size=2, max_group_size=6))


def _join(engine: Engine, ctx: Context, record: str, group: str, site: str) -> JoinOutcome:
    for _ in range(8):
        try:
            with unit_of_work(engine) as session:
                return groups.join(session, ctx, record=record, group_id=group,
                                   levels={"site": site}, actor=BUS, correlation_id=None)
        except groups.GroupRace:  # the founder committed first: the redelivery joins
            continue
    raise AssertionError(f"{record} never joined")


def _close(engine: Engine, ctx: Context, group: str) -> str:
    """'closed', or the 4xx class name a refused close gets."""
    try:
        with unit_of_work(engine) as session:
            groups.close(session, ctx, group_id=group, actor=COORDINATOR, reason=None,
                         correlation_id=None)
        return "closed"
    except DomainError as err:
        return type(err).__name__


def _state(engine: Engine, ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """group → (arm, stratum, seq) and record → (arm, group, status) as the key opens them."""
    with Session(engine) as session:
        gs = {g.id: groups.group_disclosure(ctx, g) for g in
              session.exec(select(RandomizationGroup)) if g.status == "closed"}
        members = {m.record: m for m in session.exec(select(GroupMember))}
    rows = {r.record: disclose(ctx, r) for r in allocation_rows(engine)}
    return gs, {"rows": rows, "members": members}


def test_concurrent_closes_and_joins_randomize_each_group_once(migrated: Engine,
                                                               grouped: Context) -> None:
    """Twelve groups at two sites, each closed three times at once while late members
    arrive: one close wins per group, every member who joined before it is allocated once
    to the group's arm, every later one waits for review, and each group holds one slot of
    its site in list order."""
    list_id = sealed_list_direct(migrated, grouped, 20)
    rng = random.Random(15)
    site = {f"G{g:02d}": ("rush", "uic")[g % 2] for g in range(12)}
    early = {f"E{g:02d}{i}": g_id for g, g_id in enumerate(site) for i in range(2 + g % 3)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        joined = list(pool.map(lambda r: _join(migrated, grouped, r, early[r], site[early[r]]),
                               [*early, *rng.sample(list(early), 8)]))  # 8 redelivered
    assert Counter(joined) == {JoinOutcome.JOINED: len(early), JoinOutcome.ALREADY: 8}
    late = {f"L{g:02d}": g_id for g, g_id in enumerate(site)}
    jobs: list[tuple[str, str]] = [("close", g) for g in site for _ in range(3)]
    jobs += [("join", r) for r in late]
    rng.shuffle(jobs)

    def run(job: tuple[str, str]) -> tuple[str, str, str]:
        kind, name = job
        if kind == "close":
            return kind, name, _close(migrated, grouped, name)
        return kind, name, _join(migrated, grouped, name, late[name], site[late[name]]).value

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(run, jobs))
    closes = Counter((name, outcome) for kind, name, outcome in results if kind == "close")
    assert all(closes[(g, "closed")] == 1 and closes[(g, "Conflict")] == 2 for g in site)

    gs, state = _state(migrated, grouped)
    rows, members = state["rows"], state["members"]
    assert set(gs) == set(site)
    for record, member in members.items():
        group = gs[member.group_id]
        if member.status == "allocated":
            d = rows[record]
            assert (d.arm, d.group, d.stratum, d.seq) == (group.arm, member.group_id,
                                                          group.stratum, group.seq)
        else:  # joined after its group closed: held, never allocated
            assert member.status == "review" and member.review_reason == "late"
            assert record not in rows
    assert set(early) <= {r for r, m in members.items() if m.status == "allocated"}
    assert set(rows) == {r for r, m in members.items() if m.status == "allocated"}
    # One slot per group, each site's slots taken 1..k in list order, by the group itself.
    slots = opened_slots(migrated, grouped.key, list_id)
    for stratum in ("rush", "uic"):
        used = sorted(seq for (s, seq), (_slot, by) in slots.items() if s == stratum and by)
        assert used == list(range(1, 7))
    for g, d in gs.items():
        slot, used_by = slots[(d.stratum, d.seq)]
        assert used_by == grouped.key.participant_tag(list_id, slot_user(g))
        assert slot.arm == d.arm
    with Session(migrated) as session:
        events = list(session.exec(select(OutboxMessage)
                                   .where(col(OutboxMessage.subject) == Allocated.subject)))
        assert sorted(json.loads(e.envelope)["record"] for e in events) == sorted(rows)
        assert audit.verify(session).ok


def test_a_late_member_waits_for_review_and_joins_the_group_arm_when_admitted(
        migrated: Engine, grouped: Context) -> None:
    list_id = sealed_list_direct(migrated, grouped, 4)
    for r in ("A1", "A2"):
        assert _join(migrated, grouped, r, "G1", "rush") is JoinOutcome.JOINED
    assert _join(migrated, grouped, "A1", "G1", "rush") is JoinOutcome.ALREADY
    assert _join(migrated, grouped, "X1", "G1", "uic") is JoinOutcome.OTHER_STRATUM
    assert _close(migrated, grouped, "G1") == "closed"
    assert _close(migrated, grouped, "G1") == "Conflict"
    assert _join(migrated, grouped, "A2", "G1", "rush") is JoinOutcome.ALREADY  # redelivered
    assert _join(migrated, grouped, "A3", "G1", "rush") is JoinOutcome.LATE
    assert _join(migrated, grouped, "A4", "G1", "rush") is JoinOutcome.LATE
    assert sorted(r.record for r in allocation_rows(migrated)) == ["A1", "A2"]
    with pytest.raises(InvalidInput) as no_reason, unit_of_work(migrated) as session:
        groups.admit(session, grouped, group_id="G1", record="A3", actor=MANAGER, reason=" ",
                     correlation_id=None)
    assert no_reason.value.field == "reason"
    with unit_of_work(migrated) as session:
        row = groups.admit(session, grouped, group_id="G1", record="A3", actor=MANAGER,
                           reason="joined on day 2, clinician confirms", correlation_id=None)
    with pytest.raises(Conflict), unit_of_work(migrated) as session:
        groups.admit(session, grouped, group_id="G1", record="A3", actor=MANAGER,
                     reason="again", correlation_id=None)
    with pytest.raises(NotFound), unit_of_work(migrated) as session:
        groups.admit(session, grouped, group_id="G1", record="Z9", actor=MANAGER,
                     reason="unknown", correlation_id=None)
    gs, state = _state(migrated, grouped)
    assert {r: d.arm for r, d in state["rows"].items()} == dict.fromkeys(
        ["A1", "A2", "A3"], gs["G1"].arm)
    assert row.module == {"p4p": "P4P", "ktw": "KTW"}[gs["G1"].arm]
    assert state["members"]["X1"].status == "review"  # another site: the manager decides
    with Session(migrated) as session:
        actions = [e.action for e in session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))]
    assert actions.count("group.member_joined") == 2
    assert actions.count("group.member_held_for_review") == 3
    assert actions.count("group.closed") == 1 and actions.count("group.member_admitted") == 1
    # At closure the unsealed list accounts for the group: its slot, its members' arms.
    with unit_of_work(migrated) as session:
        lists.close(session, list_id=list_id, reason="end of recruitment", actor=MANAGER)
    with pytest.raises(Conflict) as ended, unit_of_work(migrated) as session:
        groups.admit(session, grouped, group_id="G1", record="A4", actor=MANAGER,
                     reason="too late: allocation has ended", correlation_id=None)
    assert "no longer allocates" in ended.value.detail
    together = ("statistician", "monitor")
    with unit_of_work(migrated) as session:
        lists.unseal(session, grouped, list_id=list_id, actor=STATISTICIAN, reason="closure",
                     together=together)
    with unit_of_work(migrated) as session:
        opened = lists.unseal(session, grouped, list_id=list_id, reason="closure",
                              actor=Actor("mon-1", "monitor"), together=together)
    assert isinstance(opened, UnsealedList) and opened.verified, opened.problems


def test_a_member_who_withdraws_before_the_close_is_not_allocated(migrated: Engine,
                                                                  grouped: Context) -> None:
    sealed_list_direct(migrated, grouped, 4)
    for r in ("W1", "W2", "W3"):
        _join(migrated, grouped, r, "G5", "uic")
    with unit_of_work(migrated) as session:
        assert groups.withdraw(session, grouped, record="W3", actor=BUS, correlation_id=None)
    with unit_of_work(migrated) as session:  # redelivered: nothing more
        assert not groups.withdraw(session, grouped, record="W3", actor=BUS, correlation_id=None)
        assert not groups.withdraw(session, grouped, record="NOBODY", actor=BUS,
                                   correlation_id=None)
    assert _join(migrated, grouped, "W3", "G5", "uic") is JoinOutcome.ALREADY  # no rejoining
    assert _close(migrated, grouped, "G5") == "closed"
    with unit_of_work(migrated) as session:  # after the close a withdrawal undoes nothing
        assert not groups.withdraw(session, grouped, record="W1", actor=BUS, correlation_id=None)
    assert sorted(r.record for r in allocation_rows(migrated)) == ["W1", "W2"]
    _gs, state = _state(migrated, grouped)
    assert state["members"]["W3"].status == "withdrawn"


def test_an_altered_group_arm_is_found_at_unsealing(migrated: Engine, grouped: Context) -> None:
    list_id = sealed_list_direct(migrated, grouped, 4)
    for r in ("B1", "B2"):
        _join(migrated, grouped, r, "G7", "uic")
    assert _close(migrated, grouped, "G7") == "closed"
    with unit_of_work(migrated) as session:  # someone with the key rewrites the group's arm
        g = session.get(RandomizationGroup, "G7")
        assert g is not None
        d = groups.group_disclosure(grouped, g)
        other = Disclosure(**{**d.__dict__, "arm": "ktw" if d.arm == "p4p" else "p4p"})
        g.sealed_detail = grouped.key.seal(groups.GROUP_DETAIL, (list_id, "G7"),
                                           audit.canonical_json(other.body()).encode())
        session.add(g)
    with unit_of_work(migrated) as session:
        lists.close(session, list_id=list_id, reason="end", actor=MANAGER)
    together = ("statistician", "monitor")
    with unit_of_work(migrated) as session:
        lists.unseal(session, grouped, list_id=list_id, actor=STATISTICIAN, reason="closure",
                     together=together)
    with unit_of_work(migrated) as session:
        opened = lists.unseal(session, grouped, list_id=list_id, reason="closure",
                              actor=Actor("mon-1", "monitor"), together=together)
    assert isinstance(opened, UnsealedList)
    assert opened.problems == ("group G7 has another arm than its slot",
                               "record B1 does not hold the arm of group G7",
                               "record B2 does not hold the arm of group G7")


def test_refused_closes_name_the_group_and_change_nothing(migrated: Engine,
                                                          grouped: Context) -> None:
    assert _close(migrated, grouped, "G1") == "NoSealedList"  # no list yet
    list_id = sealed_list_direct(migrated, grouped, 4)
    _join(migrated, grouped, "C1", "G2", "rush")
    for group, refused in (("G0", "NotFound"), ("G2", "Conflict"), ("bad/id", "InvalidInput")):
        assert _close(migrated, grouped, group) == refused
    with pytest.raises(Conflict) as small, unit_of_work(migrated) as session:
        groups.close(session, grouped, group_id="G2", actor=COORDINATOR, reason=None,
                     correlation_id=None)
    assert "at least 2" in small.value.detail and small.value.field == "group_id"
    with pytest.raises(InvalidInput) as one_by_one, unit_of_work(migrated) as session:
        allocate(session, grouped, AllocationRequest(
            record="C1", cluster=None, site="rush", pilot=False, source="manual", actor=MANAGER,
            reason="bus down", levels={"site": "rush"}))
    assert one_by_one.value.field == "record"
    assert allocation_rows(migrated) == []
    assert [k for k, (_slot, used_by) in opened_slots(migrated, grouped.key, list_id).items()
            if used_by] == []


# ── through the bus and REST, blinded roles watching ────────────────────────────────


def _baseline(record: str, group: str, site: str = "rush", **extra: str) -> FormSaved:
    fields = {"redcap_data_access_group": site, "grp_id": group, "scr_eligible": "1",
              "cons_given": "1", "wd_withdrawn": "0",
              **{f"{form}_complete": "2" for form in FORMS}, **extra}
    return FormSaved(project_id=101, record=record, event="baseline_arm_1", instrument="odi",
                     complete_status=2, fields=fields, trigger="det")


@contextmanager
def service_logs() -> Iterator[io.StringIO]:
    """Every structlog line of the running service, as JSON, at debug level (configured
    after the service started: its start-up configures logging too)."""
    buffer = io.StringIO()
    configure_logging("randomization", level="debug", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buffer))
    try:
        yield buffer
    finally:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))


def _leaks(value: Any, words: set[str]) -> list[str]:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(words))) + r")\b")
    text = json.dumps(value) if not isinstance(value, str) else value
    return pattern.findall(text)


async def test_groups_over_the_bus_and_rest_blinded_roles_never_see_the_arm(
        tmp_path: Path, nats_server: NatsServer, database_url: str) -> None:
    protocol_file = tmp_path / "group-trial.yaml"
    protocol_file.write_text(yaml.safe_dump(group_trial_data(min_group_size=2)))
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=protocol_file) as svc:
        with service_logs() as logs:
            await _bus_and_rest(svc, logs)


async def _bus_and_rest(svc: RunningService, service_logs: io.StringIO) -> None:
    baseline_event = svc.kernel.protocol.redcap.unique_event_name(
        svc.kernel.protocol.redcap.baseline_event)
    words = {a.key for a in svc.kernel.protocol.arms}
    coordinator, manager = svc.as_role("coordinator"), svc.as_role("study_manager")
    await sealed_list(svc, 8)
    saves = [_baseline(r, g, site) for r, g, site in (
        ("P1", "G1", "rush"), ("P2", "G1", "rush"), ("P3", "G1", "rush"),
        ("P4", "G2", "uic"), ("P5", "G2", "uic"), ("P7", "G2", "uic"), ("S1", "G3", "uic"))]
    saves = [s.model_copy(update={"event": baseline_event}) for s in saves]
    not_ready = _baseline("N1", "G1", cons_given="0").model_copy(update={"event": baseline_event})
    no_group = _baseline("N2", "", "rush").model_copy(update={"event": baseline_event})
    async with Tap(svc.kernel.bus, "trial.v1.randomization.>") as tap:
        await publish(svc.kernel.bus, [form_saved_for("randomization", s)
                                       for s in [*saves, not_ready, no_group, *saves[:3]]])

        async def joined() -> bool:
            listing = await svc.client.get("/v1/groups", headers=coordinator)
            return sum(len(g["members"]) for g in listing.json()) == 7

        await eventually(joined)
        assert [e for e in await tap.read() if e.subject == Allocated.subject] == []  # joins
        closed = await svc.client.post("/v1/groups/G1/close", headers=coordinator, json={})
        assert closed.status_code == 200, closed.text
        view = closed.json()
        assert set(view) == {"group", "status", "opened_at", "closed_at", "module", "members"}
        assert view["status"] == "closed" and view["module"] in {"P4P", "KTW"}
        assert {m["record"]: m["status"] for m in view["members"]} == dict.fromkeys(
            ["P1", "P2", "P3"], "allocated")
        assert all(m["allocation_number"] for m in view["members"])
        again = await svc.client.post("/v1/groups/G1/close", headers=manager, json={})
        assert again.status_code == 409 and again.json()["field"] == "group_id"
        for group, status in (("G9", 404), ("G3", 409), ("a%20b", 422)):
            refused = await svc.client.post(f"/v1/groups/{group}/close", headers=coordinator,
                                            json={})
            assert refused.status_code == status, refused.text
            assert "group" in refused.json()["detail"] and refused.json()["field"] == "group_id"
        for role in ("assessor", "monitor", "statistician"):
            denied = await svc.client.post("/v1/groups/G2/close", headers=svc.as_role(role),
                                           json={})
            assert denied.status_code == 403
        manual = await svc.client.post("/v1/allocations", headers=manager,
                                       json={"record": "P4", "site": "uic", "reason": "bus down"})
        assert manual.status_code == 422 and manual.json()["field"] == "record"
        gone = _baseline("P7", "G2", "uic", wd_withdrawn="1").model_copy(
            update={"event": baseline_event})
        await publish(svc.kernel.bus, [form_saved_for("randomization", gone)])

        async def withdrawn() -> bool:
            g2 = (await svc.client.get("/v1/groups/G2", headers=coordinator)).json()
            return {m["record"]: m["status"] for m in g2["members"]}["P7"] == "withdrawn"

        await eventually(withdrawn)
        closed2 = await svc.client.post("/v1/groups/G2/close", headers=manager,
                                        json={"reason": "group starts Monday"})
        assert closed2.status_code == 200 and closed2.json()["arm"] in words
        late = _baseline("P6", "G1").model_copy(update={"event": baseline_event})
        await publish(svc.kernel.bus, [form_saved_for("randomization", late)])
        events = await tap.read(at_least=6)

        async def held() -> bool:
            g1 = (await svc.client.get("/v1/groups/G1", headers=coordinator)).json()
            return any(m["record"] == "P6" for m in g1["members"])

        await eventually(held)
    allocated = [e for e in events if e.subject == Allocated.subject]
    assert sorted(e.record for e in allocated) == ["P1", "P2", "P3", "P4", "P5"]
    assert {e.data["module"] for e in allocated if e.record in ("P1", "P2", "P3")} == {
        view["module"]}
    g1_blind = (await svc.client.get("/v1/groups/G1", headers=coordinator)).json()
    assert {m["record"]: (m["status"], m["review_reason"]) for m in g1_blind["members"]}["P6"] \
        == ("review", "late")
    g1 = (await svc.client.get("/v1/groups/G1", headers=manager)).json()
    for record in ("P1", "P2", "P3"):
        member = (await svc.client.get(f"/v1/allocations/{record}", headers=manager)).json()
        assert (member["arm"], member["group"], member["stratum"]) == (g1["arm"], "G1", "rush")
        assert member["slot"] == g1["slot"]
    admitted = await svc.client.post("/v1/groups/G1/members/P6/admit", headers=manager,
                                     json={"reason": "joined on day 1, clinician confirms"})
    assert admitted.status_code == 200 and admitted.json()["arm"] == g1["arm"]
    denied = await svc.client.post("/v1/groups/G1/members/P6/admit", headers=coordinator,
                                   json={"reason": "joined on day 1"})
    assert denied.status_code == 403
    # Blinded readers: no arm, no stratum, in any response, event, audit entry, metric or log.
    for role in ("coordinator",):
        for url in ("/v1/groups", "/v1/groups/G1", "/v1/groups/G2"):
            body = (await svc.client.get(url, headers=svc.as_role(role))).json()
            assert _leaks(body, words) == [] and "arm" not in json.dumps(body), url
    assert _leaks([e.model_dump(mode="json") for e in events], words) == []
    with Session(svc.kernel.engine) as session:
        entries = list(session.exec(select(AuditEntry)))
    assert _leaks([e.after for e in entries], words) == []
    assert {"group.closed", "group.member_joined", "group.member_held_for_review",
            "group.member_admitted", "group.unblinded_read"} <= {e.action for e in entries}
    metrics = (await svc.client.get("/metrics")).text
    samples = [re.sub(r"\s[-+0-9.eE]+$", "", line) for line in metrics.splitlines()
               if line and not line.startswith("#")]
    assert samples and _leaks(samples, words) == []
    lines = [json.loads(line) for line in service_logs.getvalue().splitlines()]
    assert any(x.get("event") == "group.closed" for x in lines)  # the logs were captured
    assert _leaks(lines, words) == []
