"""The web console in a real headless Chromium against a real stack: every role signs in,
opens every page it may and gets 403 for the others, never sees a blinded fact when
blinded, and does its main job; session cookie flags, CSRF and expiry. Screenshots of
every page go to `.tailor/test-output/console/`."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.console.pages import PAGES
from services.core.roles import BEARER_ROLES, Role, is_unblinded
from tests.integration.gateway.support import Edge, unblinding_words

from .conftest import APPROVALS, RECORDS, _until, console_url, sign_in

Stack = tuple[Edge, dict[str, str]]


def _arm_words(edge: Edge) -> set[str]:
    protocol = edge.protocol
    arms = {a.key for a in protocol.arms} | {protocol.randomization.arm_of.matching,
                                            protocol.randomization.arm_of.non_matching}
    return arms | {a.replace("_", " ") for a in arms}


def _leaked(html: str, words: set[str]) -> list[str]:
    return sorted(w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", html))


def _visit_all(page: Any, edge: Edge, role: Role, shots: Path) -> dict[str, str]:
    seen = {}
    for p in PAGES:
        response = page.goto(f"{console_url(edge)}{p.path}")
        if p.open_to(role):
            assert response.status == 200, (role, p.key, response.status)
            page.screenshot(path=str(shots / f"{role.value}-{p.key}.png"), full_page=True)
            seen[p.key] = page.content()
        else:
            assert response.status == 403, (role, p.key, response.status)
    return seen


@pytest.mark.parametrize("role", sorted(BEARER_ROLES), ids=str)
def test_each_role_sees_its_pages_and_nothing_blinded(seeded: Stack, context: Any, shots: Path,
                                                      role: Role) -> None:
    edge, _seeded = seeded
    page = context.new_page()
    sign_in(page, edge, role)
    seen = _visit_all(page, edge, role, shots)
    if "participants" in seen:
        response = page.goto(f"{console_url(edge)}/console/participants/{RECORDS[0]}")
        assert response.status == 200
        page.screenshot(path=str(shots / f"{role.value}-participant.png"), full_page=True)
        seen["participant"] = page.content()
    if not is_unblinded(role):
        for key, html in seen.items():
            assert _leaked(html, _arm_words(edge)) == [], (role, key)
        for key in ("participant", "today"):
            assert _leaked(seen.get(key, ""), unblinding_words(edge.protocol)) == [], (role, key)
    elif "participant" in seen:
        assert _leaked(seen["participant"], _arm_words(edge)), "an unblinded role sees the arm"


def test_coordinator_claims_a_phone_task_and_records_the_outcome(seeded: Stack, context: Any,
                                                                 shots: Path) -> None:
    edge, seeded = seeded
    page = context.new_page()
    sign_in(page, edge, "coordinator")
    row = page.locator(f"#task-{seeded['task_id']}")
    row.get_by_role("button", name="Claim").click()
    page.wait_for_load_state()
    assert "is yours" in page.locator(".flash").inner_text()
    row = page.locator(f"#task-{seeded['task_id']}")
    row.get_by_label("Outcome").select_option("voicemail")
    row.get_by_label("Note").fill("left a message")
    row.get_by_role("button", name="Record outcome").click()
    page.wait_for_load_state()
    page.screenshot(path=str(shots / "coordinator-outcome-recorded.png"), full_page=True)
    assert "recorded: voicemail" in page.locator(".flash").inner_text()
    open_tasks = edge.call("GET", "/api/v1/notifications/v1/tasks", "coordinator").json()
    assert seeded["task_id"] not in {str(t["id"]) for t in open_tasks}
    # Opening a participant's page is recorded like an API read, with the page's own route.
    page.goto(f"{console_url(edge)}/console/participants/{RECORDS[2]}")
    trail = edge.call("GET", "/api/v1/audit", "monitor", params={
        "service": "gateway", "participant": RECORDS[2], "action": "participant_data.read"}).json()
    routes = {(e["actor"], e["after"]["route"]) for e in trail["entries"]}
    actor = f"apikey:{edge.key_ids[Role.COORDINATOR]}"
    assert (actor, "/console/participants/{record}") in routes
    assert (actor, "/api/v1/notifications/v1/schedules/{record}") in routes


def test_safety_officer_acknowledges_an_sae_obligation(seeded: Stack, context: Any, shots: Path) -> None:
    edge, _seeded = seeded
    obligation = edge.call("GET", "/api/v1/safety/v1/obligations", "safety_officer").json()[0]
    page = context.new_page()
    sign_in(page, edge, "safety_officer")
    row = page.locator(f"#obligation-{obligation['id']}")
    assert "overdue by" in row.inner_text() or "left" in row.inner_text()
    row.get_by_role("button", name="Acknowledge").click()
    page.wait_for_load_state()
    page.screenshot(path=str(shots / "safety_officer-acknowledged.png"), full_page=True)
    assert "acknowledged" in page.locator(".flash").inner_text().lower()
    after = {o["id"]: o for o in edge.call("GET", "/api/v1/safety/v1/obligations", "safety_officer").json()}
    assert after[obligation["id"]]["acknowledged_by"]
    page.goto(f"{console_url(edge)}/console/safety")
    page.get_by_role("link", name=obligation["case_id"]).click()
    page.wait_for_load_state()
    page.screenshot(path=str(shots / "safety_officer-case.png"), full_page=True)
    assert "Version 1: initial report" in page.content() and "fainted after session" in page.content()


def test_admin_issues_a_key_shown_once_and_revokes_it(seeded: Stack, context: Any, shots: Path) -> None:
    edge, _trial = seeded
    page = context.new_page()
    sign_in(page, edge, "admin")
    page.get_by_label("Name (whose key, for what)").fill("night shift ops")
    page.get_by_label("Role").select_option("ops")
    page.get_by_role("button", name="Issue").click()
    page.wait_for_load_state()
    token = page.locator("#issued .mono").inner_text().strip()
    assert token.startswith("tlr_")
    bearer = {"Authorization": f"Bearer {token}"}
    assert edge.call("GET", "/api/v1/ops/health", headers=bearer).status_code == 200
    page.goto(f"{console_url(edge)}/console/keys")
    assert token not in page.content()  # shown once
    page.locator("#keys tr", has_text="night shift ops").get_by_role("button", name="Revoke").click()
    page.wait_for_load_state()
    page.screenshot(path=str(shots / "admin-key-revoked.png"), full_page=True)
    assert edge.call("GET", "/api/v1/ops/health", headers=bearer).status_code == 401


def test_pages_fit_a_tablet_and_sign_in_works_by_keyboard(seeded: Stack, browser: Any, shots: Path) -> None:
    edge, _trial = seeded
    tablet = browser.new_context(viewport={"width": 820, "height": 1180}, has_touch=True)
    try:
        page = tablet.new_page()
        # Keyboard only: the skip link first, then the key field; Enter signs in.
        page.goto(f"{console_url(edge)}/console/sign-in")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "api_key"
        page.keyboard.type(edge.keys[Role.COORDINATOR])
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/console/today$"))
        for path in ("/console/today", f"/console/participants/{RECORDS[0]}"):
            page.goto(f"{console_url(edge)}{path}")
            name = path.rsplit("/", 1)[-1]
            page.screenshot(path=str(shots / f"tablet-coordinator-{name}.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    finally:
        tablet.close()


def test_monitor_exports_the_audit_trail_as_csv(seeded: Stack, context: Any, shots: Path) -> None:
    edge, _seeded = seeded
    page = context.new_page()
    sign_in(page, edge, "monitor")
    page.goto(f"{console_url(edge)}/console/audit?service=randomization&limit=5")
    assert "Every chain verifies." in page.locator("#verify-verdict").inner_text()
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    saved = shots / "monitor-audit.csv"
    download.value.save_as(str(saved))
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("service,seq,at,actor") and 1 < len(lines) <= 6
    assert all(line.startswith("randomization,") for line in lines[1:])
    page.locator("#next-page").click()
    page.wait_for_load_state()
    assert page.locator("#entries tbody tr").count() >= 1


def test_statistician_sealed_a_list_and_downloads_its_commitment(seeded: Stack, context: Any) -> None:
    edge, trial = seeded  # the list was generated and sealed in the console (see `seeded`)
    listed = edge.call("GET", "/api/v1/randomization/v1/lists", "statistician").json()
    lists = {lst["id"]: lst for lst in listed}
    assert lists[trial["list_id"]]["status"] == "sealed"
    page = context.new_page()
    sign_in(page, edge, "statistician")
    page.goto(f"{console_url(edge)}/console/randomization")
    row = page.locator(f"#list-{trial['list_id']}")
    assert row.get_by_role("button", name="Seal", exact=True).count() == 0
    with page.expect_download() as download:
        page.locator(f"#list-{trial['list_id']}").get_by_role("link", name="Commitment statement").click()
    statement = Path(download.value.path()).read_text()
    assert trial["list_id"] in statement and "digest" in statement


def test_study_manager_unblinds_in_an_emergency_after_confirming(seeded: Stack, context: Any,
                                                                shots: Path) -> None:
    edge, _seeded = seeded
    page = context.new_page()
    sign_in(page, edge, "study_manager")
    page.goto(f"{console_url(edge)}/console/randomization")
    page.get_by_label("Record id").fill(RECORDS[1])
    page.get_by_label("Reason").fill("anaphylaxis in the emergency room, treating physician asks")
    page.get_by_role("button", name="Continue to confirmation").click()
    page.wait_for_load_state()
    page.screenshot(path=str(shots / "study_manager-unblinding-confirm.png"), full_page=True)
    assert _leaked(page.content(), _arm_words(edge)) == []  # nothing revealed before confirming
    page.locator("#confirm-unblinding").click()
    page.wait_for_load_state()
    page.screenshot(path=str(shots / "study_manager-unblinded.png"), full_page=True)
    assert _leaked(page.locator("#unblinded").inner_html(), _arm_words(edge))
    trail = edge.call("GET", "/api/v1/audit", "monitor",
                      params={"service": "randomization", "participant": RECORDS[1]}).json()["entries"]
    assert any("unblind" in e["action"] and "anaphylaxis" in (e["reason"] or "") for e in trail)


def _session_cookie(context: Any) -> dict[str, Any]:
    [cookie] = [c for c in context.cookies() if c["name"] == "tailor_console"]
    return cookie  # type: ignore[no-any-return]


def test_session_cookie_flags_and_idle_and_absolute_expiry(seeded: Stack, context: Any) -> None:
    edge, _trial = seeded
    page = context.new_page()
    sign_in(page, edge, "coordinator")
    cookie = _session_cookie(context)
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == (
        True, True, "Strict", "/console")
    store = edge.gateway.state.console.sessions
    real_clock = store.clock
    try:
        store.clock = lambda: real_clock() + store.idle + timedelta(seconds=1)
        page.goto(f"{console_url(edge)}/console/today")
        assert "/sign-in" in page.url and "without activity" in page.content()
        store.clock = real_clock
        sign_in(page, edge, "coordinator")
        # Busy all day: the idle clock keeps restarting, the absolute limit still ends it.
        started = real_clock()
        step, at = store.idle - timedelta(minutes=1), started
        while at - started < store.absolute:
            at += step
            store.clock = lambda t=at: t
            response = page.goto(f"{console_url(edge)}/console/participants")
        assert response.request.redirected_from is not None  # only the last visit was refused
        assert "/sign-in" in page.url and "maximum length" in page.content()
    finally:
        store.clock = real_clock


def test_forms_need_the_csrf_token_and_this_origin_and_sign_out_ends_the_session(
        seeded: Stack, context: Any) -> None:
    edge, _trial = seeded
    page = context.new_page()
    sign_in(page, edge, "safety_officer")
    listed = edge.call("GET", "/api/v1/safety/v1/obligations", "safety_officer").json()
    obligation = next(o for o in listed if not o["sent_at"])
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    base = console_url(edge)
    url = f"{base}/console/today/obligations/{obligation['id']}/sent"
    cookies = {"tailor_console": _session_cookie(context)["value"]}
    with httpx.Client(cookies=cookies, follow_redirects=False) as client:
        missing = client.post(url, data={"note": "forged"}, headers={"Origin": base})
        wrong = client.post(url, data={"csrf": "guess", "note": "forged"}, headers={"Origin": base})
        elsewhere = client.post(url, data={"csrf": csrf, "note": "forged"},
                                headers={"Origin": "https://attacker.example"})
        assert (missing.status_code, wrong.status_code, elsewhere.status_code) == (403, 403, 403)
        assert "security token" in missing.text
        page_headers = client.get(f"{base}/console/today").headers
    assert "default-src 'none'" in page_headers["content-security-policy"]
    assert page_headers["x-frame-options"] == "DENY" and page_headers["cache-control"] == "no-store"
    after = {o["id"]: o for o in edge.call("GET", "/api/v1/safety/v1/obligations", "safety_officer").json()}
    assert after[obligation["id"]]["sent_at"] is None  # nothing changed
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert "You are signed out" in page.content()
    page.goto(f"{base}/console/today")
    assert "/sign-in" in page.url
    with httpx.Client(cookies=cookies, follow_redirects=False) as client:
        assert client.get(f"{base}/console/today").status_code == 303  # the old cookie is dead
    page.get_by_label("API key").fill(edge.keys[Role.MONITOR][:-2] + "xx")  # a wrong secret
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "was not accepted" in page.content()
    assert not [c for c in context.cookies() if c["name"] == "tailor_console"]


def test_sign_in_through_the_identity_provider_with_pkce(seeded: Stack, context: Any) -> None:
    edge, _trial = seeded
    page = context.new_page()
    page.goto(f"{console_url(edge)}/console/sign-in")
    page.get_by_role("link", name="Sign in with your organisation").click()
    page.wait_for_url(re.compile(r".*/console/today$"))
    assert page.locator("[data-role]").inner_text() == "monitor"
    assert page.locator("#dlq-h, #review-h").count() >= 1
    assert APPROVALS.refused_verifiers == 0
    # The identity provider's answer is good once: a replayed callback signs nobody in.
    replay = httpx.get(f"{console_url(edge)}/console/sign-in/oidc/callback?state=used&code=x")
    assert replay.status_code == 400 and "tailor_console" not in replay.headers.get("set-cookie", "")


def test_coordinator_resolves_a_follow_up_on_today(seeded: Stack, browser: Any, context: Any,
                                                   shots: Path) -> None:
    edge, _trial = seeded
    # An emergency unblinding is a fact the team must follow up: notifications opens one.
    unblinded = edge.call("POST", f"/api/v1/randomization/v1/allocations/{RECORDS[2]}/emergency-unblinding",
                          "study_manager", json={"reason": "console test: overdose, poison centre asks"})
    assert unblinded.status_code == 200, unblinded.text
    [opened] = _until_listed(edge, RECORDS[2])
    page = context.new_page()
    sign_in(page, edge, "coordinator")
    page.goto(f"{console_url(edge)}/console/today")
    row = page.locator(f"#follow-up-{opened['id']}")
    assert "emergency unblinded" in row.inner_text()
    assert _leaked(page.content(), _arm_words(edge)) == []
    page.screenshot(path=str(shots / "coordinator-follow-ups.png"), full_page=True)
    row.get_by_label("Note").fill("trial team informed by phone")
    row.get_by_role("button", name="Resolve").click()
    page.wait_for_load_state()
    assert f"Follow-up {opened['id']} resolved: done" in page.locator(".flash").inner_text()
    assert page.locator(f"#follow-up-{opened['id']}").count() == 0
    done = edge.call("GET", "/api/v1/notifications/v1/follow-ups", "coordinator",
                     params={"state": "done"}).json()
    assert any(f["id"] == opened["id"] and f["resolved_by"] for f in done)
    # Blinded roles the table does not name see no follow-ups section at all.
    other = browser.new_context().new_page()
    sign_in(other, edge, "monitor")
    other.goto(f"{console_url(edge)}/console/today")
    assert other.locator("#fu-h").count() == 0
    other.context.close()


@pytest.mark.parametrize("role", ["statistician", "dsmb"])
def test_recruitment_page_shows_the_reports_flow_and_verdicts(seeded: Stack, context: Any,
                                                             shots: Path, role: str) -> None:
    """Against the live reports service: pooled figures for a blinded role, per arm for the DSMB."""
    edge, _trial = seeded
    flow = edge.call("GET", "/api/v1/reports/v1/flow", role).json()
    criteria = edge.call("GET", "/api/v1/reports/v1/feasibility", role).json()
    assert flow["randomized"] == len(RECORDS) and criteria, (flow, criteria)
    page = context.new_page()
    sign_in(page, edge, role)
    page.goto(f"{console_url(edge)}/console/recruitment")
    page.screenshot(path=str(shots / f"{role}-recruitment-live.png"), full_page=True)
    assert page.locator("#reports-unavailable").count() == 0
    assert page.locator("#flow-randomized").inner_text() == str(flow["randomized"])
    assert page.locator("#flow-assessed").inner_text() == str(flow["assessed"])
    assert page.locator("section[aria-labelledby=flow-h] svg").count() == 1
    for c in criteria:
        verdict = page.locator(f"#criterion-{c['key']} .verdict").inner_text()
        assert verdict == (c["verdict"] or "pending"), (c["key"], verdict)
    per_arm = page.locator("#flow-by-arm tbody tr")
    if is_unblinded(Role(role)):
        assert {a["group"] for a in flow["by_arm"]} and per_arm.count() == len(flow["by_arm"])
        assert _leaked(page.locator("#flow-by-arm").inner_html(), _arm_words(edge))
    else:
        assert flow["by_arm"] is None and per_arm.count() == 0
        assert _leaked(page.content(), _arm_words(edge)) == []


def _until_listed(edge: Edge, record: str) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]]:
        rows = edge.call("GET", "/api/v1/notifications/v1/follow-ups", "coordinator").json()
        return [f for f in rows if f["record"] == record and f["kind"] == "emergency_unblinded"]
    return _until("the follow-up", listed)  # type: ignore[no-any-return]


def _post_in_row(page: Any, row: str, label: str, text: str, button: str) -> str:
    page.locator(row).get_by_label(label).fill(text)
    page.locator(row).get_by_role("button", name=button).click()
    page.wait_for_load_state()
    return page.locator(".flash").inner_text()


def test_closure_then_unsealing_by_two_people_each_with_a_reason(seeded: Stack, browser: Any,
                                                                  shots: Path) -> None:
    """Last in this module: it ends allocation on the list every other test allocates from."""
    edge, trial = seeded
    list_id = trial["list_id"]
    pages = {}
    for role in ("study_manager", "statistician", "monitor"):
        pages[role] = browser.new_context(viewport={"width": 1280, "height": 900},
                                          accept_downloads=True).new_page()
        sign_in(pages[role], edge, role)
        pages[role].goto(f"{console_url(edge)}/console/randomization")
    # Unsealing is not offered while the list still allocates.
    assert pages["statistician"].locator(f"#list-{list_id}").get_by_role(
        "button", name=re.compile("unsealing")).count() == 0
    manager = pages["study_manager"]
    manager.get_by_label("List id", exact=True).fill(list_id)
    manager.get_by_label("Why allocation ends").fill("recruitment target reached")
    manager.get_by_role("button", name="Close allocation").click()
    manager.wait_for_load_state()
    assert f"Allocation on list {list_id} closed" in manager.locator(".flash").inner_text()
    statistician, monitor = pages["statistician"], pages["monitor"]
    statistician.reload()
    flash = _post_in_row(statistician, f"#list-{list_id}", "Reason for unsealing",
                         "final analysis after database lock", "Request unsealing (at closure)")
    assert "waiting for monitor" in flash, flash
    monitor.reload()
    flash = _post_in_row(monitor, f"#list-{list_id}", "Reason for unsealing",
                         "checked the lock and the analysis plan", "Confirm unsealing")
    monitor.screenshot(path=str(shots / "monitor-unsealed.png"), full_page=True)
    assert f"List {list_id} unsealed and verified" in flash, flash
    assert _leaked(monitor.content(), _arm_words(edge)) == []  # the monitor stays blinded
    reasons = {e["reason"] for e in _trail(edge, "randomization") if e["reason"]}
    assert {"recruitment target reached", "final analysis after database lock",
            "checked the lock and the analysis plan"} <= reasons, reasons
    # The opened list is read by the unblinded study manager, not by the two who unsealed it.
    manager.reload()
    manager.get_by_label("Unsealed list id").fill(list_id)
    with manager.expect_download() as download:
        manager.get_by_role("button", name="Download the unsealed list").click()
    assert _leaked(Path(download.value.path()).read_text(), _arm_words(edge))
    assert monitor.locator("#unsealed-h").count() == 0
    for page in pages.values():
        page.context.close()


def _trail(edge: Edge, service: str) -> list[dict[str, Any]]:
    """Every entry of one service's chain, page after page, as a monitor reads it."""
    entries: list[dict[str, Any]] = []
    params: dict[str, str] = {"service": service}
    while True:
        page = edge.call("GET", "/api/v1/audit", "monitor", params=params).json()
        entries += page["entries"]
        if not page.get("next_cursor"):
            return entries
        params["cursor"] = page["next_cursor"]
