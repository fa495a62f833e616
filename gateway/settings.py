"""The gateway's own settings (`TAILOR_GATEWAY_…`) and where the services listen
(`TAILOR_<SERVICE>_URL`, set by the local stack or the deployment)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.auth.oidc import OidcSettings, OidcVerifier, RemoteJwks, StaticJwks
from services.core.roles import SERVICES, parse_role

MIB = 1024 * 1024


def service_urls_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    return {s: environ[f"TAILOR_{s.upper()}_URL"] for s in SERVICES
            if environ.get(f"TAILOR_{s.upper()}_URL")}


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_GATEWAY_", extra="ignore")

    # Per key (API key or OIDC subject): a burst, then a steady rate. A safety limit against
    # runaway scripts, not a quota; each gateway replica enforces its own.
    rate_limit_per_second: float = Field(default=20.0, gt=0)
    rate_limit_burst: float = Field(default=120.0, ge=1)
    # Routes without a bearer token (the DET, the SMS callback) read at most a small body
    # before their secret or signature is checked; JSON bodies of authenticated callers are
    # small; only an upload route (list import, CSV) takes more, streamed to the service.
    max_unauthenticated_body_bytes: int = Field(default=64 * 1024, gt=0)
    max_body_bytes: int = Field(default=1 * MIB, gt=0)
    max_upload_bytes: int = Field(default=20 * MIB, gt=0)
    # Browser origins allowed to call the API; empty = CORS off (no CORS headers at all).
    cors_origins: list[str] = Field(default_factory=list)
    # A service that does not answer in time is reported as unavailable (503), never awaited.
    proxy_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    proxy_timeout_seconds: float = Field(default=30.0, gt=0)
    proxy_max_connections: int = Field(default=100, gt=0)
    internal_token_ttl_seconds: int = Field(default=60, gt=0, le=300)
    # Proxies (addresses or networks, e.g. the ingress) whose X-Forwarded-For is believed;
    # empty: the header is ignored and the connection's peer is the client.
    trusted_proxies: list[str] = Field(default_factory=list)
    # OIDC (production): on when an issuer is set; keys from a JWKS URL or an inline JWKS.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_jwks: dict[str, Any] | None = None
    oidc_role_claim: str = "roles"
    oidc_role_map: dict[str, str] = Field(default_factory=dict)
    service_urls: dict[str, str] = Field(default_factory=service_urls_from_env)

    @field_validator("oidc_role_map")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for role in value.values():
            parse_role(role, field="oidc_role_map")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from ipaddress import ip_network
        for entry in value:
            try:
                ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or network") from None
        return value

    @field_validator("service_urls")
    @classmethod
    def _known_services(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(SERVICES)}")
        return {name: url.rstrip("/") for name, url in value.items()}

    def oidc_verifier(self) -> OidcVerifier | None:
        if not self.oidc_issuer:
            return None
        if not self.oidc_audience:
            raise ValueError("TAILOR_GATEWAY_OIDC_AUDIENCE: required with an OIDC issuer")
        keys: StaticJwks | RemoteJwks
        if self.oidc_jwks:
            keys = StaticJwks(self.oidc_jwks)
        elif self.oidc_jwks_url:
            keys = RemoteJwks(self.oidc_jwks_url)
        else:
            raise ValueError("TAILOR_GATEWAY_OIDC_JWKS_URL: required with an OIDC issuer")
        settings = OidcSettings(
            issuer=self.oidc_issuer, audience=self.oidc_audience, role_claim=self.oidc_role_claim,
            role_map={k: parse_role(v) for k, v in self.oidc_role_map.items()},
            leeway=timedelta(seconds=30))
        return OidcVerifier(settings, keys)
