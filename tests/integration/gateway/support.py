"""Helpers of the gateway tests: serving an app on a free port, an OIDC identity provider
of our own, the running edge with one API key per role, and the unblinding words."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from sqlmodel import Session

from gateway.app import create_app
from gateway.auth.key_repository import create_key, revoke_key
from gateway.settings import GatewaySettings
from services.core.db import unit_of_work
from services.core.protocol import TrialProtocol
from services.core.roles import Role
from services.core.runner import server_config
from services.core.settings import ServiceSettings
from tests.support.harness import test_settings

ISSUER = "https://id.example.org/realms/trial"
AUDIENCE = "tailor-api"
DET_SECRET = "det-secret-for-gateway-tests"


class Served:
    """Apps served on free ports (uvicorn in threads), started one after the other (their
    migrations must not overlap) and stopped all at once (their drains overlap)."""

    def __init__(self) -> None:
        self._running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    @staticmethod
    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it; without it every answer waits ~40 ms for a
        # delayed ACK (asyncio sets it only on sockets it creates itself).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        return sock

    @staticmethod
    def url_of(sock: socket.socket) -> str:
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def start(self, app: FastAPI, sock: socket.socket | None = None) -> str:
        sock = sock or self.bind()
        # As `services.core.runner.serve` runs it: the server never rewrites the client.
        server = uvicorn.Server(server_config(app))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        self._running.append((server, thread, sock))
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the app did not start")
            time.sleep(0.01)
        return self.url_of(sock)

    def stop(self) -> None:
        for server, _thread, _sock in self._running:
            server.should_exit = True
        for _server, thread, sock in self._running:
            thread.join(timeout=30)
            sock.close()
        self._running.clear()


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    served = Served()
    try:
        yield served.start(app)
    finally:
        served.stop()


@dataclass
class IdentityProvider:
    """An OIDC issuer of our own: its key signs tokens, its JWKS is what the gateway trusts."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    kid: str = "test-rsa-1"

    @property
    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def claims(self, role: str | None = "monitor", **overrides: object) -> dict[str, Any]:
        now = int(datetime.now(UTC).timestamp())
        claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "person-17", "iat": now,
                                  "exp": now + 300, "roles": [role, "offline_access"]}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, role: str | None = "monitor", **overrides: object) -> str:
        return jwt.encode(self.claims(role, **overrides), self.key, algorithm="RS256",
                          headers={"kid": self.kid})


def gateway_settings(service_urls: dict[str, str], idp: IdentityProvider,
                     **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "service_urls": service_urls, "rate_limit_per_second": 1000.0, "rate_limit_burst": 5000.0,
        "oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks": idp.jwks, **overrides}
    return GatewaySettings(**values)  # type: ignore[arg-type]


def gateway_app(home: Path, nats_url: str, settings: GatewaySettings, db: str,
                **create: Any) -> FastAPI:
    return create_app(config=test_settings(home, nats_url),
                      own=ServiceSettings(name="gateway", database_url=f"sqlite:///{home / db}"),
                      gateway=settings, **create)


@dataclass
class Edge:
    """The running gateway in front of the four services, and a key for every role."""

    home: Path
    nats_url: str
    service_urls: dict[str, str]
    gateway_url: str
    gateway: FastAPI
    protocol: TrialProtocol
    idp: IdentityProvider
    keys: dict[Role, str] = field(default_factory=dict)
    key_ids: dict[Role, str] = field(default_factory=dict)
    service_apps: dict[str, FastAPI] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))

    def headers(self, role: Role | str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[Role(role)]}"}

    def call(self, method: str, path: str, role: Role | str | None = None,
             headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        sent = dict(headers or {})
        if role is not None:
            sent.update(self.headers(role))
        return self.http.request(method, f"{self.gateway_url}{path}", headers=sent, **kwargs)

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return self.gateway.state.kernel.engine

    def session(self) -> Session:
        return Session(self.engine)

    def issue(self, role: Role | str, name: str, *, expires_at: datetime | None = None,
              now: datetime | None = None) -> tuple[str, str]:
        with unit_of_work(self.engine) as session:
            issued = create_key(session, name=name, role=role, expires_at=expires_at, now=now,
                                created_by="test")
        return issued.info.id, issued.token

    def revoke(self, key_id: str) -> None:
        with unit_of_work(self.engine) as session:
            revoke_key(session, key_id, revoked_by="test")


def unblinding_words(protocol: TrialProtocol) -> set[str]:
    """Arm and cluster keys and labels: none may reach a blinded reader."""
    return {*(c.key for c in protocol.clusters), *(c.label for c in protocol.clusters),
            *(a.key for a in protocol.arms), protocol.randomization.arm_of.matching,
            protocol.randomization.arm_of.non_matching}


# Keys that name a participant's unblinding facts wherever they appear.
UNBLINDING_KEYS = frozenset({"arm", "cluster", "cluster_probabilities", "probabilities"})
# Keys that do so next to a participant (elsewhere they describe the list's design).
PARTICIPANT_UNBLINDING_KEYS = UNBLINDING_KEYS | {"stratum", "strata"}
PARTICIPANT_KEYS = frozenset({"record", "participant"})


def leaks(body: Any, words: set[str], *, near_participant: bool = False) -> list[str]:
    """What would unblind a reader: a key naming arm or cluster; and, in anything that is
    about one participant (an object with a `record` or `participant`), a stratum or a
    value that is an arm or cluster. The design itself (which clusters and strata exist,
    a model's classes) is the protocol's, open to every role."""
    found: list[str] = []
    if isinstance(body, dict):
        near = near_participant or any(body.get(k) for k in PARTICIPANT_KEYS)
        forbidden = PARTICIPANT_UNBLINDING_KEYS if near else UNBLINDING_KEYS
        for key, value in body.items():
            if str(key).lower() in forbidden:
                found.append(f"key {key!r}")
            found += leaks(value, words, near_participant=near)
    elif isinstance(body, list | tuple):
        for value in body:
            found += leaks(value, words, near_participant=near_participant)
    elif near_participant and isinstance(body, str) and body in words:
        found.append(body)
    return found


def body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except json.JSONDecodeError:
        return response.text


@dataclass
class Trial:
    list_id: str
    records: list[str]
    values: dict[str, str]  # path parameter name → a value that exists

    def fill(self, template: str) -> str:
        """The template with real values; unknown parameters get a value that exists nowhere."""
        return fill(template, self.values)


def fill(template: str, values: dict[str, str] | None = None) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return (values or {}).get(name, "000000000000" if name == "key_id" else f"no-such-{name}")

    return re.sub(r"\{([^}]+)\}", value, template)


def adverse_event(participant: str) -> dict[str, Any]:
    """A serious (hospitalisation), possibly related adverse event, as a coordinator reports it."""
    return {
        "participant": participant, "onset_date": "2025-03-09",
        "awareness_time": "2025-03-10T08:00:00+00:00", "verbatim_term": "fainted after session",
        "severity": "severe", "relatedness": "possibly", "outcome": "recovering",
        "action_taken": "none", "reporter": "Dr. Example",
        "seriousness": {"death": False, "life_threatening": False, "hospitalisation": True,
                        "disability": False, "congenital_anomaly": False,
                        "medically_important": False},
    }
