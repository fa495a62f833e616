"""`tailor nats accounts`: a seed per service (0600) kept across runs, and permissions
derived from the code — each service publishes its own facts and reads only its durables."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.core import runner
from services.core.bus_contract import Subscription, check_durables, owner_of
from services.core.consumers import Consumer
from services.core.events import Allocated, AuditHead, ClusterAssigned, FormSavedForAllocation
from services.core.runner import ServiceSpec
from services.core.settings import SERVICES
from tailor_cli import registry
from tailor_cli.main import app


def test_accounts_writes_private_seeds_and_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "nats"
    assert CliRunner().invoke(app, ["nats", "accounts", "--out", str(out)]).exit_code == 0
    seeds = {p.stem: p.read_bytes() for p in out.glob("*.nk")}
    assert set(seeds) == {"tailor", *SERVICES}
    for path in out.glob("*.nk"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conf = (out / "auth.conf").read_text()
    assert not any(seed.strip().decode() in conf for seed in seeds.values())  # public keys only
    assert CliRunner().invoke(app, ["nats", "accounts", "--out", str(out)]).exit_code == 0
    assert {p.stem: p.read_bytes() for p in out.glob("*.nk")} == seeds


def test_permissions_follow_the_code() -> None:
    grants = {g.service: g for g in registry.bus_grants()}
    notifications = grants["notifications"]
    assert "trial.v1.notifications.>" in notifications.publish
    assert not any(s.startswith(("trial.v1.allocation", "trial.v1.randomization", "trial.v1.redcap"))
                   for s in notifications.publish)
    assert "$JS.API.CONSUMER.MSG.NEXT.TRIAL.notifications-allocated" in notifications.publish
    assert notifications.subscribe == ("_INBOX.notifications.>",)
    for grant in grants.values():
        assert not any("CONSUMER.CREATE" in s or "CONSUMER.DURABLE" in s for s in grant.publish)
        assert not any(s.startswith("$JS.API.STREAM.MSG.GET.TRIAL.") or s == "$JS.API.STREAM.MSG.GET.TRIAL"
                       for s in grant.publish), grant.service
    assert "trial.v1.redcap.>" in grants["gateway"].publish


def test_owners_of_subjects() -> None:
    assert owner_of(FormSavedForAllocation.subject, SERVICES) == "gateway"
    assert owner_of(ClusterAssigned.subject, SERVICES) == "allocation"
    assert owner_of(Allocated.subject, SERVICES) == "randomization"
    assert owner_of(AuditHead.subject.format(service="safety"), SERVICES) == "safety"


def test_a_service_may_not_consume_what_its_spec_does_not_declare() -> None:
    undeclared = Consumer("allocation-peek", (Allocated.subject,), lambda _s, _e: None)
    spec = ServiceSpec(name="allocation", migrations=Path("."), consumers=lambda _k: [undeclared])
    with pytest.raises(RuntimeError, match="allocation-peek"):
        runner._declared(spec, [undeclared])
    with pytest.raises(ValueError, match="must start with 'safety-'"):
        check_durables("safety", [Subscription("peek", (Allocated.subject,))])
