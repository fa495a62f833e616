"""The whole public edge for the gateway tests: nats-server, the four services and the
gateway, each served on a free port by uvicorn in a thread (the gateway reaches the
services over HTTP, as in production), one API key per role, and an OIDC identity
provider made in the test. Started once for this package (a few seconds) and shared."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from services.core.internal_token import ensure_keypair
from services.core.protocol import load_protocol
from services.core.roles import BEARER_ROLES, SERVICES, Role
from services.core.runner import build_app
from services.core.settings import ServiceSettings
from tailor_cli.natsd import NatsServer
from tests.support.harness import PROTOCOL, test_settings

from .support import (
    DET_SECRET,
    Edge,
    IdentityProvider,
    Served,
    Trial,
    adverse_event,
    gateway_app,
    gateway_settings,
)


@pytest.fixture(scope="package")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    home = tmp_path_factory.mktemp("edge")
    ensure_keypair(home / "keys")
    idp = IdentityProvider()
    served = Served()
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        nats = NatsServer(store_dir=home / "nats").start()
        stack.callback(nats.kill)
        stack.callback(served.stop)
        sockets = {name: Served.bind() for name in SERVICES}
        urls = {name: Served.url_of(sock) for name, sock in sockets.items()}
        env.setenv("TAILOR_REDCAP_DET_SECRET", DET_SECRET)
        env.setenv("TAILOR_REDCAP_DET_REFUSED_BURST", "100000")  # the matrix tries every role
        env.setenv("TAILOR_RANDOMIZATION_URL", urls["randomization"])  # safety's DSMB report
        apps = {}
        for name in SERVICES:
            spec = importlib.import_module(f"services.{name}.app").SPEC
            apps[name] = build_app(spec, config=test_settings(home, nats.url),
                                   own=ServiceSettings(name=name, database_url=f"sqlite:///{home / name}.db"))
            served.start(apps[name], sockets[name])
        gateway = gateway_app(home, nats.url, gateway_settings(urls, idp), "gateway.db")
        found = Edge(home, nats.url, urls, served.start(gateway), gateway, load_protocol(PROTOCOL), idp,
                     service_apps=apps)
        stack.callback(found.http.close)
        for role in sorted(BEARER_ROLES):
            found.key_ids[role], found.keys[role] = found.issue(role, f"test {role}")
        yield found


@pytest.fixture(scope="package")
def trial(edge: Edge) -> Trial:
    """A sealed list, three participants allocated by hand, a serious adverse event: real
    values for every path parameter, so routes answer with data rather than 404."""
    made = edge.call("POST", "/api/v1/randomization/v1/lists", "statistician",
                     json={"slots_per_stratum": 12})
    assert made.status_code == 201, made.text
    list_id = made.json()["id"]
    sealed = edge.call("POST", f"/api/v1/randomization/v1/lists/{list_id}/seal", "statistician")
    assert sealed.status_code == 200, sealed.text
    clusters = [c.key for c in edge.protocol.clusters]
    records = [f"GW-{i:03d}" for i in range(1, 4)]
    for i, record in enumerate(records):
        allocated = edge.call("POST", "/api/v1/randomization/v1/allocations", "study_manager",
                              json={"record": record, "cluster": clusters[i % len(clusters)],
                                    "reason": "gateway test: manual allocation"})
        assert allocated.status_code == 201, allocated.text
    case = edge.call("POST", "/api/v1/safety/v1/adverse-events", "coordinator",
                     json=adverse_event(records[0]))
    assert case.status_code == 201, case.text
    values = {"record": records[0], "list_id": list_id, "case_id": case.json()["case_id"],
              "key_id": edge.issue(Role.OPS, "a key for routes that take a key id")[0]}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and edge.call(
            "GET", f"/api/v1/notifications/v1/schedules/{records[0]}", "coordinator").status_code != 200:
        time.sleep(0.2)
    for name, path, role in (("obligation_id", "/api/v1/safety/v1/obligations", "safety_officer"),
                             ("task_id", "/api/v1/notifications/v1/tasks", "coordinator"),
                             ("candidate_id", "/api/v1/safety/v1/candidates", "safety_officer")):
        listed = edge.call("GET", path, role)
        if listed.status_code == 200 and listed.json():
            values[name] = str(listed.json()[0]["id"])
    return Trial(list_id, records, values)
