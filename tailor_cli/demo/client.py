"""The demo talks to Tailor the way people do: through the gateway, with API keys, one per
role (issued and audited on the gateway's database, as `tailor keys create` does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlmodel import Session

from gateway.key_service import issue_key
from services.core.db import make_engine, unit_of_work


def issue_keys(gateway_db: str, roles: list[str]) -> dict[str, str]:
    engine = make_engine(gateway_db)
    try:
        with unit_of_work(engine) as session:
            return {role: issue_key(session, name=f"demo {role}", role=role, expires_in_days=1,
                                    actor="operator:tailor-demo", actor_role="admin").token
                    for role in roles}
    finally:
        engine.dispose()


@dataclass
class Gateway:
    url: str
    keys: dict[str, str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def call(self, role: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.url}{path}", **kwargs,
                                     headers={"Authorization": f"Bearer {self.keys[role]}"})
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} as {role}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def close(self) -> None:
        self.http.close()


def session_of(url: str) -> Session:
    return Session(make_engine(url))
