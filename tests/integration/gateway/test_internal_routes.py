"""The internal survey-link routes through the whole public edge: the guard hands them to
the route (which checks the survey-link secret itself), a person's API key opens nothing
there, and an identifier with whitespace is refused at the edge naming the parameter."""

from __future__ import annotations

import pytest

from services.core.roles import BEARER_ROLES
from services.core.survey_links import HEADER, SURVEY_LINK_PATH

from .support import Edge

QUERY = {"record": "GW-001", "instrument": "mpid_ps", "event": "week_4"}


def test_without_the_secret_the_route_refuses_naming_the_header(edge: Edge) -> None:
    r = edge.call("GET", SURVEY_LINK_PATH, params=QUERY)
    assert r.status_code == 403 and r.json()["field"] == HEADER


@pytest.mark.parametrize("role", sorted(BEARER_ROLES))
def test_a_persons_key_opens_nothing_there(edge: Edge, role: str) -> None:
    r = edge.call("GET", SURVEY_LINK_PATH, role, params=QUERY)
    assert r.status_code == 403 and r.json()["field"] == HEADER


def test_an_identifier_with_whitespace_is_refused_at_the_edge(edge: Edge) -> None:
    r = edge.call("GET", SURVEY_LINK_PATH, params={**QUERY, "record": "GW 001"})
    assert r.status_code == 400 and r.json()["field"] == "record"
