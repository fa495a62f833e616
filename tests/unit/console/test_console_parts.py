"""The console's pure parts: sessions and their clocks, who may open which page, the SVG
plots' escaping, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.console.format import countdown, seg
from gateway.console.pages import PAGES, pages_for
from gateway.console.rules import console_rule
from gateway.console.sessions import Ended, SessionStore
from gateway.console.svg import cumulative_chart, flow_diagram, interval_chart
from services.core.internal_token import Caller
from services.core.roles import BEARER_ROLES, Role, is_allowed

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_a_session_ends_after_idle_time_and_at_its_absolute_limit() -> None:
    clock = Clock()
    store = SessionStore(idle=timedelta(minutes=30), absolute=timedelta(hours=2), clock=clock)
    token, _ = store.create(Caller("apikey:1", Role.MONITOR), "tlr_secret")
    clock.now += timedelta(minutes=29)
    assert store.get(token)[0] is not None  # and the idle clock restarts
    clock.now += timedelta(minutes=29)
    assert store.get(token)[0] is not None
    clock.now += timedelta(minutes=30)
    assert store.get(token) == (None, Ended.IDLE)
    assert store.get(token) == (None, Ended.NONE)  # gone for good

    token, _ = store.create(Caller("apikey:1", Role.MONITOR), "tlr_secret")
    for _ in range(4):
        clock.now += timedelta(minutes=29)
        assert store.get(token)[0] is not None
    clock.now += timedelta(minutes=5)
    assert store.get(token) == (None, Ended.ABSOLUTE)


def test_the_store_keeps_no_cookie_value_and_hides_the_credential_from_repr() -> None:
    store = SessionStore(idle=timedelta(minutes=30), absolute=timedelta(hours=2))
    token, session = store.create(Caller("apikey:1", Role.ADMIN), "tlr_secret")
    assert token not in store._sessions  # stored under the token's hash
    assert "tlr_secret" not in repr(session) and session.csrf not in repr(session)
    assert store.end(token) is session and store.get(token) == (None, Ended.NONE)


def test_pages_open_exactly_to_roles_the_api_table_lets_read_them() -> None:
    for role in BEARER_ROLES:
        for page in pages_for(role):
            assert any(is_allowed(role, m, r) for m, r in page.reads)
    keys = {role: {p.key for p in pages_for(role)} for role in BEARER_ROLES}
    assert keys[Role.ADMIN] == {"keys"}
    assert keys[Role.ASSESSOR] == {"participants"}
    assert "audit" in keys[Role.MONITOR]
    assert all("audit" not in keys[r] for r in BEARER_ROLES - {Role.MONITOR})
    assert "keys" not in keys[Role.OPS] and "participants" not in keys[Role.OPS]
    assert all(p.path.startswith("/console/") for p in PAGES)


def test_console_rule_covers_the_console_only() -> None:
    assert console_rule("GET", "/console/today") is not None
    assert console_rule("POST", "/console/sign-in") is not None
    assert console_rule("DELETE", "/console/today") is None
    assert console_rule("GET", "/consoles") is None and console_rule("GET", "/api/v1/audit") is None


def test_plots_escape_labels() -> None:
    evil = '<script>alert(1)</script>'
    for markup in (cumulative_chart([evil], [3], target=10, title=evil),
                   interval_chart([(evil, 0.5, 0.4, 0.6)], title=evil),
                   flow_diagram([(evil, 3)], [(0, evil, 1)], title=evil)):
        assert "<script>" not in markup and "&lt;script&gt;" in markup
        assert markup.startswith("<svg") and markup.endswith("</svg>")


def test_countdown_and_path_segments() -> None:
    assert countdown("2026-01-05T12:30:00Z", T0) == ("3 h 30 min left", "warn")
    assert countdown("2026-01-08T09:00:00+00:00", T0) == ("3 d 0 h left", "ok")
    assert countdown("2026-01-05T08:00:00Z", T0) == ("overdue by 1 h 0 min", "bad")
    assert countdown(None, T0)[0] == "no deadline"
    assert seg("../x/y") == "..%2Fx%2Fy"


def test_report_plots_draw_the_reports_service_shapes() -> None:
    from gateway.console.views_recruitment import feasibility_plot, flow_plot, recruitment_plot

    flow = {"as_of": "2026-03-01", "assessed": 117, "excluded": {"not_meeting_criteria": 10, "declined": 2,
                                                                  "other": 0},
            "excluded_total": 12, "randomized": 104,
            "pooled": {"allocated": 104, "lost_to_follow_up": 3, "discontinued": 1, "continuing": 100,
                       "analysed": 100}}
    assert "n = 117" in flow_plot(flow) and "n = 4" in flow_plot(flow)
    recruitment = {"target": 120, "weeks": [{"week_start": "2026-01-05", "cumulative": 4},
                                            {"week_start": "2026-01-12", "cumulative": 9}]}
    assert "target 120" in recruitment_plot(recruitment)
    criteria = [{"key": "consent_rate", "label": "Consent rate", "measure": "proportion", "value": 0.8,
                 "ci_low": 0.7, "ci_high": 0.87}, {"key": "n", "measure": "count", "value": 104}]
    drawn = feasibility_plot(criteria)
    assert "Consent rate" in drawn and "80%" in drawn
