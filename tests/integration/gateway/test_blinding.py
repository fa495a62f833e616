"""Blinding through the gateway: every route, called by every blinded role the table
allows, with real data behind it, answers without arm or cluster (no such key, no such
value). Unblinded roles do see them, which shows the check can tell the difference."""

from __future__ import annotations

from typing import Any

import pytest

from services.core.roles import BEARER_ROLES, PERMISSIONS, Credential, Role, RoutePermission, is_unblinded

from .support import Edge, Trial, adverse_event, body_of, leaks, unblinding_words

# Blinded: no unblinded view. The statistician is left out on purpose: independent of the
# trial team, they design the lists (strata are the clusters) and never see a participant.
BLINDED = sorted(r for r in BEARER_ROLES if not is_unblinded(r) and r is not Role.STATISTICIAN)


# Listings that need the participant as a query parameter.
BY_RECORD = frozenset({"/api/v1/notifications/v1/messages"})


def _bodies(trial: Trial) -> dict[str, dict[str, Any]]:
    return {
        "/api/v1/safety/v1/adverse-events": adverse_event(trial.records[1]),
        "/api/v1/safety/v1/adverse-events/{case_id}/follow-ups": {
            "reason": "the site sent new information", "changes": {"outcome": "recovered"}},
        "/api/v1/safety/v1/obligations/{obligation_id}/acknowledge": {"note": "seen"},
        "/api/v1/safety/v1/obligations/{obligation_id}/sent": {"note": "sent to the authority"},
        "/api/v1/safety/v1/candidates/{candidate_id}/triage": {"decision": "not_adverse_event"},
        "/api/v1/notifications/v1/participants/{record}/opt-out": {"channel": "email"},
    }


def _calls() -> list[tuple[RoutePermission, Role]]:
    calls = []
    for rule in PERMISSIONS:
        if rule.credential is not Credential.BEARER:
            continue
        roles = [r for r in BLINDED if r in rule.roles]
        # A two-person route takes effect when the second role asks: call it once only.
        calls += [(rule, r) for r in (roles[:1] if rule.together else roles)]
    return calls


@pytest.fixture(scope="module")
def words(edge: Edge) -> set[str]:
    return unblinding_words(edge.protocol)


def test_no_blinded_role_receives_arm_or_cluster_on_any_route(edge: Edge, trial: Trial,
                                                              words: set[str]) -> None:
    bodies = _bodies(trial)
    answered, problems = 0, []
    for rule, role in _calls():
        body = bodies.get(rule.template)
        response = edge.call(rule.method, trial.fill(rule.template), role,
                             params={"record": trial.records[0]} if rule.template in BY_RECORD else None,
                             **({"json": body} if body is not None else {}))
        label = f"{role} {rule.method} {rule.template} → {response.status_code}"
        if response.status_code >= 500:
            problems.append(f"{label}: {response.text[:200]}")
        found = leaks(body_of(response), words)
        if found:
            problems.append(f"{label} leaks {found[:5]}")
        answered += response.is_success
    assert not problems, "\n".join(problems)
    assert answered >= len(_calls()) // 2  # most calls reached real data, not a 404


def test_blinded_readers_see_module_but_not_arm(edge: Edge, trial: Trial, words: set[str]) -> None:
    record = trial.records[0]
    view = edge.call("GET", f"/api/v1/randomization/v1/allocations/{record}", Role.COORDINATOR)
    assert view.status_code == 200
    assert view.json()["module"] in {m.key for m in edge.protocol.modules}
    assert leaks(view.json(), words) == []
    # The outcome assessor gets schedule and completion only, never the module.
    refused = edge.call("GET", f"/api/v1/randomization/v1/allocations/{record}", Role.ASSESSOR)
    assert refused.status_code == 403
    assert edge.call("GET", f"/api/v1/notifications/v1/schedules/{record}",
                     Role.ASSESSOR).status_code == 200
    unblinded = edge.call("GET", f"/api/v1/randomization/v1/allocations/{record}", Role.STUDY_MANAGER)
    assert unblinded.status_code == 200 and leaks(unblinded.json(), words) != []


def test_dsmb_report_reaches_randomization_with_the_members_own_token(edge: Edge, trial: Trial,
                                                                    words: set[str]) -> None:
    report = edge.call("GET", "/api/v1/safety/v1/reports/unblinded", Role.DSMB)
    assert report.status_code == 200, report.text
    assert leaks(report.json(), words) != []  # by arm: the DSMB is unblinded
    blinded = edge.call("GET", "/api/v1/safety/v1/reports/blinded", Role.MONITOR)
    assert blinded.status_code == 200 and leaks(blinded.json(), words) == []


def test_the_whole_audit_trail_is_blinded(edge: Edge, trial: Trial, words: set[str]) -> None:
    """Monitors read every chain; allocations and unblinding left entries in them."""
    entries, cursor = [], None
    while True:
        page = edge.call("GET", "/api/v1/audit", Role.MONITOR,
                         params={"limit": 200, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        entries += page.json()["entries"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert {e["service"] for e in entries} >= {"gateway", "randomization", "safety"}
    assert any(e["action"].startswith("allocation") for e in entries)
    found = [(e["service"], e["action"], leaks(e, words)) for e in entries if leaks(e, words)]
    assert found == []
