"""The SMS provider simulator: accepts, fails deterministically, calls back signed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from services.notifications.domain import (
    DeliveryState,
    FailureKind,
    classify_http_status,
    provider_state,
    verify_callback,
)
from sim.sms import SendRequest, SmsConfig, SmsProvider, create_app, serving

ROOT = Path(__file__).resolve().parents[3]
SECRET = b"test-secret"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint that records the callbacks it receives."""
    got: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/callbacks/sms")
    async def callback(request: Request) -> dict[str, str]:
        got.append({"headers": dict(request.headers), "body": await request.body()})
        return {"ok": "yes"}

    async with serving(app) as url:
        yield f"{url}/callbacks/sms", got


async def test_accepts_then_calls_back_with_a_valid_signature(
        receiver: tuple[str, list[dict[str, Any]]]):
    url, got = receiver
    provider = SmsProvider(SmsConfig(seed=1, delay=(0.01, 0.02), secret=SECRET,
                                     callback_url=url, api_key="k"))
    async with serving(create_app(provider)) as base, httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/v1/messages", json={"to": "+4917012345678", "text": "Erinnerung"},
                         headers={"Authorization": "Bearer k", "Idempotency-Key": "rem-1"})
        assert r.status_code == 202 and r.json()["status"] == "accepted"
        sms_id = r.json()["id"]
        await provider.settle()
        assert (await c.get(f"/v1/messages/{sms_id}")).json()["status"] == "delivered"
    cb, = got
    verify_callback(SECRET, cb["headers"]["x-signature-timestamp"], cb["body"],
                    cb["headers"]["x-signature"], datetime.now(UTC))
    payload = json.loads(cb["body"])
    assert (payload["id"], payload["reference"], payload["status"]) == (sms_id, "rem-1",
                                                                        "delivered")
    assert provider_state(payload["status"]) is DeliveryState.DELIVERED


async def test_same_idempotency_key_sends_once():
    provider = SmsProvider(SmsConfig(delay=(0.0, 0.0)))
    async with serving(create_app(provider)) as base, httpx.AsyncClient(base_url=base) as c:
        body = {"to": "+4917012345678", "text": "x"}
        first = await c.post("/v1/messages", json=body, headers={"Idempotency-Key": "k1"})
        again = await c.post("/v1/messages", json=body, headers={"Idempotency-Key": "k1"})
        await provider.settle()
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"] and len(provider.messages) == 1


async def test_errors_are_transient_or_permanent_as_a_real_provider_would_answer():
    provider = SmsProvider(SmsConfig(api_key="k"))
    provider.fail_next(1)
    provider.block("+4915100000000")
    auth = {"Authorization": "Bearer k"}
    async with serving(create_app(provider)) as base, httpx.AsyncClient(base_url=base) as c:
        busy = await c.post("/v1/messages", json={"to": "+4917012345678", "text": "x"},
                            headers=auth)
        blocked = await c.post("/v1/messages", json={"to": "+4915100000000", "text": "x"},
                               headers=auth)
        bad = await c.post("/v1/messages", json={"to": "0170 123", "text": "x"}, headers=auth)
        unauth = await c.post("/v1/messages", json={"to": "+4917012345678", "text": "x"})
        ok = await c.post("/v1/messages", json={"to": "+4917012345678", "text": "x"},
                          headers=auth)
        await provider.settle()
    assert classify_http_status(busy.status_code) is FailureKind.TRANSIENT
    for r in (blocked, bad, unauth):
        assert classify_http_status(r.status_code) is FailureKind.PERMANENT
    assert ok.status_code == 202


async def _outcomes(seed: int) -> list[str]:
    """Outcome of each of 40 sends (503, or the status reported later)."""
    provider = SmsProvider(SmsConfig(seed=seed, reject_rate=0.3, fail_rate=0.3,
                                     delay=(0.0, 0.001)))
    results = []
    for i in range(40):
        status, msg = provider.accept(SendRequest(to="+4917012345678", text="x"), f"key-{i}")
        results.append(str(status) if msg is None else msg.id)
    await provider.settle()
    return [r if r.isdigit() else provider.messages[r].status for r in results]


async def test_failures_are_deterministic_by_seed():
    a, b, c = await _outcomes(7), await _outcomes(7), await _outcomes(8)
    assert a == b and a != c
    assert {"503", "delivered", "failed"} <= set(a)


async def test_retry_after_503_with_the_same_key_gets_a_fresh_draw():
    provider = SmsProvider(SmsConfig(seed=3, reject_rate=0.5, delay=(0.0, 0.0)))
    statuses = []
    for _ in range(30):
        status, _msg = provider.accept(SendRequest(to="+4917012345678", text="x"), "same")
        statuses.append(status)
        if status == 202:
            break
    await provider.settle()
    assert statuses[-1] == 202 and len(provider.messages) == 1


async def test_duplicate_callbacks_carry_the_same_callback_id(
        receiver: tuple[str, list[dict[str, Any]]]):
    url, got = receiver
    provider = SmsProvider(SmsConfig(delay=(0.0, 0.0), secret=SECRET, callback_url=url,
                                     duplicate_callbacks=True, fail_rate=1.0))
    async with serving(create_app(provider)) as base, httpx.AsyncClient(base_url=base) as c:
        await c.post("/v1/messages", json={"to": "+4917012345678", "text": "x"})
        await provider.settle()
    ids = [json.loads(cb["body"])["callback_id"] for cb in got]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert json.loads(got[0]["body"])["status"] == "failed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runs_as_a_process():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sim.sms", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            deadline = time.monotonic() + 15
            while True:
                try:
                    r = c.post("/v1/messages", json={"to": "+4917012345678", "text": "x"})
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "sim.sms did not start"
                    time.sleep(0.1)
            assert r.status_code == 202
            assert len(c.get("/v1/messages").json()) == 1
    finally:
        proc.terminate()
        proc.wait(10)
