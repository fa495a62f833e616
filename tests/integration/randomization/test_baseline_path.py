"""A design without a prediction step (rush-mechanisms: minimization by site and baseline
pain interference) is randomized from the baseline REDCap saves sealed to this service:
once per participant, only when consent, eligibility and every baseline form are there,
never for the withdrawn, and a value that is no level is refused without an allocation."""

from __future__ import annotations

from pathlib import Path

from services.core.events import Allocated, FormSaved
from services.randomization.app import SPEC
from services.randomization.service import disclose
from tailor_cli.natsd import NatsServer
from tests.support.harness import running_service
from tests.support.sealed import form_saved_for

from .support import Tap, allocation_rows, publish, sealed_list

RUSH = Path("protocols/rush-mechanisms.yaml").resolve()
FORMS = ("screening", "consent", "demographics", "baseline_measures")


def baseline(record: str, *, site: str = "1", interference: str = "7", consent: str = "1",
             complete: tuple[str, ...] = FORMS, withdrawn: str = "0") -> FormSaved:
    fields = {"scr_site": site, "scr_pain_interference": interference, "scr_eligible": "1",
              "cons_given": consent, "wd_withdrawn": withdrawn,
              **{f"{form}_complete": "2" if form in complete else "0" for form in FORMS}}
    return FormSaved(project_id=103, record=record, event="t0_baseline_arm_1",
                     instrument="baseline_measures", complete_status=2, fields=fields,
                     trigger="det")


async def test_complete_baselines_are_minimized_once_each(tmp_path: Path, nats_server: NatsServer,
                                                          database_url: str) -> None:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=RUSH) as svc:
        await sealed_list(svc)
        ready = [f"R{i:02d}" for i in range(16)]
        saves = [baseline(r, site="1" if i % 3 else "2", interference=str(3 + i % 8))
                 for i, r in enumerate(ready)]
        not_ready = [baseline("N01", consent="0"), baseline("N02", complete=FORMS[:3]),
                     baseline("N03", withdrawn="1"), baseline("N04", interference="eleventy"),
                     baseline("N05", site="9")]
        async with Tap(svc.kernel.bus, Allocated.subject) as tap:
            await publish(svc.kernel.bus, [form_saved_for("randomization", s)
                                           for s in [*saves, *not_ready, *saves[:5]]])
            events = await tap.read(at_least=16)
        assert sorted(e.record for e in events) == ready  # once each, nobody else
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
