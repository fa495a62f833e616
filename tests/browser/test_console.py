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

from .conftest import RECORDS, console_url, sign_in

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
def test_each_role_sees_its_pages_and_nothing_blinded(stack: Stack, context: Any, shots: Path,
                                                      role: Role) -> None:
    edge, _seeded = stack
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
