"""A real stack for the console's browser tests, started once per module: nats-server,
the four services and the gateway on free ports (uvicorn in threads, as in the gateway
tests), one API key per role, a sealed list, three allocated participants with contact
details, a serious adverse event and a phone task that has come due. Chromium is Debian's
package (`scripts/ensure-browser.sh`), driven by Playwright; nothing is downloaded."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.console.settings import ConsoleSettings
from services.core.events import FormSaved
from services.core.internal_token import ensure_keypair
from services.core.protocol import load_protocol
from services.core.roles import BEARER_ROLES, SERVICES, Role
from services.core.runner import build_app
from services.core.settings import ServiceSettings
from sim.redcap.testing import PERPAIN_REDCAP, running_emulator
from tailor_cli.natsd import NatsServer
from tests.integration.gateway.support import (
    DET_SECRET,
    Edge,
    IdentityProvider,
    Served,
    adverse_event,
    gateway_app,
    gateway_settings,
)
from tests.support.harness import PROTOCOL, provisioner_bus, test_settings
from tests.support.sealed import configure_bus_keys, form_saved_for

from .identity_provider import Approvals, provider_app

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("TAILOR_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(".tailor/test-output/console")
RECORDS = ("CN-001", "CN-002", "CN-003")
APPROVALS = Approvals()


def chromium_path() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found:
        return found
    reason = f"no Chromium at {CHROMIUM} (install it with scripts/ensure-browser.sh)"
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _consent(record: str) -> FormSaved:
    return FormSaved(project_id=101, record=record, event="t0_baseline", instrument="consent",
                     complete_status=2, trigger="det", fields={
                         "record_id": record, "cons_given": "1",
                         "cons_email": f"{record}@participant.example", "cons_mobile": "+49 151 10000042",
                         "cons_address": f"P. {record}\nHauptstraße 5\n10115 Berlin",
                         "cons_language": "en", "cons_timezone": "Europe/Berlin",
                         "cons_optout___email": "0", "cons_optout___sms": "0", "cons_optout___phone": "0",
                         "cons_optout___letter": "0", "consent_complete": "2"})


async def _publish(nats_url: str, events: list[tuple[str, FormSaved]]) -> None:
    bus = provisioner_bus(nats_url, "browser-test")
    await bus.connect(attempts=20)
    try:
        for _record, event in events:
            env = form_saved_for("notifications", event)
            await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)
    finally:
        await bus.close()


def _until(what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not reached: {what}")


class Ahead:
    """The notifications service's clock, some days ahead of real time (so reminders and
    staff tasks come due without waiting)."""

    def __init__(self, at: datetime) -> None:
        self.move_to(at)

    def move_to(self, at: datetime) -> None:
        self.offset = at - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _in_thread(coroutine: Any) -> None:
    """Run a coroutine on a thread of its own (Playwright's sync API holds this one's loop)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def seal_in_console(browser: Any, edge: Edge) -> str:
    """The statistician's main job, done in the browser: generate a list and seal it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        page = context.new_page()
        sign_in(page, edge, "statistician")
        page.goto(f"{console_url(edge)}/console/randomization")
        page.get_by_label("Slots per stratum").fill("12")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_load_state()
        found = re.search(r"List (\w+) generated", page.locator(".flash").inner_text())
        assert found, page.content()
        list_id = found.group(1)
        page.locator(f"#list-{list_id}").get_by_role("button", name="Seal", exact=True).click()
        page.wait_for_load_state()
        OUTPUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUTPUT / "statistician-sealed.png"), full_page=True)
        assert f"List {list_id} sealed" in page.locator(".flash").inner_text(), page.content()
        return list_id
    finally:
        context.close()


def _seed(edge: Edge, list_id: str) -> dict[str, str]:
    _in_thread(_publish(edge.nats_url, [(r, _consent(r)) for r in RECORDS]))
    notifications = edge.service_apps["notifications"]
    from sqlmodel import Session

    from services.notifications.models import ContactRow

    def contacts() -> bool:
        with Session(notifications.state.kernel.engine) as session:
            return all(session.get(ContactRow, r) is not None for r in RECORDS)

    _until("contact details stored", contacts)
    clusters = [c.key for c in edge.protocol.clusters]
    for i, record in enumerate(RECORDS):
        allocated = edge.call("POST", "/api/v1/randomization/v1/allocations", "study_manager",
                              json={"record": record, "cluster": clusters[i % len(clusters)],
                                    "reason": "console test: manual allocation"})
        assert allocated.status_code == 201, allocated.text
    case = edge.call("POST", "/api/v1/safety/v1/adverse-events", "coordinator",
                     json=adverse_event(RECORDS[0]))
    assert case.status_code == 201, case.text
    for record in RECORDS:
        _until("schedules", lambda r=record: edge.call(
            "GET", f"/api/v1/notifications/v1/schedules/{r}", "coordinator").status_code == 200)
    schedule = edge.call("GET", f"/api/v1/notifications/v1/schedules/{RECORDS[0]}", "coordinator").json()
    phone = next(r for t in schedule["timepoints"] for r in t["reminders"] if r["channel"] == "phone")
    rt = notifications.state.deps  # its clock is an `Ahead` (see the `edge` fixture)
    # An hour after the first phone reminder came due (its window still open).
    rt.clock.move_to(datetime.fromisoformat(phone["due_at"]) + timedelta(hours=1))
    rt.wake()
    tasks = _until("a phone task", lambda: [t for t in edge.call(
        "GET", "/api/v1/notifications/v1/tasks", "coordinator").json() if t["channel"] == "phone"])
    return {"list_id": list_id, "case_id": case.json()["case_id"], "task_id": str(tasks[0]["id"])}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    home = tmp_path_factory.mktemp("console")
    ensure_keypair(home / "keys")
    idp = IdentityProvider()
    served = Served()
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        nats = NatsServer(store_dir=home / "nats").start()
        stack.callback(nats.kill)
        stack.callback(served.stop)
        sockets = {name: Served.bind() for name in SERVICES}
        urls = {name: Served.url_of(sock) for name, sock in sockets.items()}
        # Module-wide bus keys: this stack outlives each test's own (autouse) keys.
        configure_bus_keys(home / "bus-keys", env)
        env.setenv("TAILOR_REDCAP_DET_SECRET", DET_SECRET)
        env.setenv("TAILOR_RANDOMIZATION_URL", urls["randomization"])
        # REDCap holds the participants, so reminders and call scripts carry their own
        # survey links, fetched by notifications through the gateway.
        redcap = stack.enter_context(running_emulator(
            home / "redcap.sqlite", dictionary_dir=PERPAIN_REDCAP, project_id=101))
        for record in RECORDS:
            redcap.save_form("screening", values={"scr_eligible": "1"}, record=record,
                             event="t0_baseline_arm_1", fire_det=False)
        env.setenv("TAILOR_REDCAP_API_URL", redcap.api_url)
        env.setenv("TAILOR_REDCAP_TOKEN", redcap.token)
        gateway_socket = Served.bind()
        env.setenv("TAILOR_GATEWAY_URL", Served.url_of(gateway_socket))
        apps = {}
        for name in SERVICES:
            spec = importlib.import_module(f"services.{name}.app").SPEC
            apps[name] = build_app(spec, config=test_settings(home, nats.url),
                                   own=ServiceSettings(name=name, database_url=f"sqlite:///{home / name}.db"),
                                   overrides={"clock": Ahead(datetime.now(UTC))}
                                   if name == "notifications" else None)
            served.start(apps[name], sockets[name])
        provider = served.start(provider_app(idp, APPROVALS))
        sign_on = ConsoleSettings(oidc_client_id="tailor-console",
                                  oidc_authorization_endpoint=f"{provider}/authorize",
                                  oidc_token_endpoint=f"{provider}/token")
        gateway = gateway_app(home, nats.url, gateway_settings(urls, idp), "gateway.db",
                              console_settings=sign_on)
        edge = Edge(home, nats.url, urls, served.start(gateway, gateway_socket), gateway,
                    load_protocol(PROTOCOL), idp, service_apps=apps)
        stack.callback(edge.http.close)
        for role in sorted(BEARER_ROLES):
            edge.key_ids[role], edge.keys[role] = edge.issue(role, f"console {role}")
        yield edge


@pytest.fixture(autouse=True)
def bus_keys() -> None:
    """The stack's module-wide keys (see `edge`) stay in force: fresh keys per test would
    not be the ones its long-running services hold."""


@pytest.fixture(scope="module")
def seeded(edge: Edge, browser: Any) -> tuple[Edge, dict[str, str]]:
    """The trial as the tests need it, starting with the list the statistician sealed."""
    return edge, _seed(edge, seal_in_console(browser, edge))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("CI=true but Playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    made = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    yield made
    made.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


def console_url(edge: Edge) -> str:
    """The gateway as the browser addresses it (a loopback address counts as a secure
    context, so Chromium keeps the Secure cookie over plain http)."""
    return edge.gateway_url


def sign_in(page: Any, edge: Edge, role: Role | str) -> None:
    page.goto(f"{console_url(edge)}/console/")
    page.get_by_label("API key").fill(edge.keys[Role(role)])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/sign-in" not in page.url, page.content()
