"""A site from REDCap's data access group: for a protocol that declares no site field, the
gateway fetches a saved baseline with its DAG (REDCap leaves it out unless asked), the
randomization cut keeps it, and the randomization service reads the site from it."""

from __future__ import annotations

import secrets
from pathlib import Path
from types import SimpleNamespace

import redcap

from gateway.redcap import service
from gateway.redcap.client import RedcapClient
from services.core.events import FormSaved
from services.core.events.form_fields import per_consumer
from services.core.protocol import TrialProtocol, load_protocol
from services.randomization.domain.baseline import levels_of
from sim.redcap.testing import running_emulator

RUSH = load_protocol("protocols/rush-mechanisms.yaml")
REDCAP = Path("protocols/rush-mechanisms/redcap")
EVENT = "t0_baseline_arm_1"


def _by_dag(protocol: TrialProtocol) -> TrialProtocol:
    r = protocol.randomization
    return protocol.model_copy(update={"randomization": r.model_copy(
        update={"site": type(r.site)()})})


def _fetched(client: RedcapClient, protocol: TrialProtocol, record: str) -> dict[str, str]:
    trigger = SimpleNamespace(record=record, event="t0_baseline", instrument="screening",
                              repeat_instance=None)
    row, _fields = service.fetch_for(client, protocol, trigger)  # type: ignore[arg-type]
    assert row is not None
    return row


def test_the_site_comes_from_the_records_data_access_group(tmp_path: Path) -> None:
    by_dag = _by_dag(RUSH)
    token = secrets.token_hex(16).upper()
    with running_emulator(tmp_path / "redcap.sqlite") as rc:
        pid, _ = rc.emulator.create_from_folder(REDCAP, token=token)
        project = redcap.Project(rc.api_url, token)
        project.import_dags([{"data_access_group_name": "site_2", "unique_group_name": ""},
                             {"data_access_group_name": "rush_chicago",
                              "unique_group_name": ""}])
        values = {"scr_site": "1", "scr_pain_interference": "8"}
        rc.save_form("screening", record="7", event=EVENT, dag="site_2", values=values,
                     project_id=pid, fire_det=False)
        rc.save_form("screening", record="8", event=EVENT, values=values, project_id=pid,
                     fire_det=False)  # in no group
        client = RedcapClient(rc.api_url, token)
        row = _fetched(client, by_dag, "7")
        assert row["redcap_data_access_group"] == "site_2"
        saved = FormSaved(project_id=pid, record="7", event=EVENT, instrument="screening",
                          complete_status=2, fields=row, trigger="det")
        cut = per_consumer(saved, by_dag, [])["randomization"]
        assert levels_of(by_dag, cut.fields) == {"site": "site_2", "interference": "high"}
        assert _fetched(client, by_dag, "8")["redcap_data_access_group"] == ""
        # A protocol with a site field does not ask for the DAG at all.
        assert "redcap_data_access_group" not in _fetched(client, RUSH, "7")
