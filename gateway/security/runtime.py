"""What the gateway's edge holds while it runs: settings, the rate limiter, the OIDC
verifier, the proxy's pooled clients and the internal-token signer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.engine import Engine
from starlette.requests import HTTPConnection
from starlette.types import Scope

from gateway.auth.oidc import OidcVerifier
from gateway.auth.rate_limit import RateLimiter
from gateway.settings import GatewaySettings
from services.core import audit
from services.core.db import is_sqlite
from services.core.errors import DomainError
from services.core.internal_token import (
    ENV_PRIVATE_KEY,
    Caller,
    InternalKeyError,
    InternalTokenSigner,
    ensure_keypair,
    load_private_key,
    private_key_from_env,
)

from .client import Network, networks
from .refusals import RefusalSummary

if TYPE_CHECKING:
    from gateway.proxy import Proxy
    from services.core.runner import Kernel

log = structlog.get_logger(__name__)


class NotConfigured(DomainError):
    status = 503
    title = "Gateway not ready"


def load_signer(home: Path, *, embedded: bool, ttl_seconds: int) -> InternalTokenSigner:
    """The key from the environment; the embedded SQLite default may keep one under
    `<home>/keys` (the local stack creates it before starting any process)."""
    if os.environ.get(ENV_PRIVATE_KEY) or os.environ.get(f"{ENV_PRIVATE_KEY}_FILE"):
        key = private_key_from_env()
    elif embedded:
        files = ensure_keypair(home / "keys")
        key = load_private_key(files.private_key.read_bytes(), field=str(files.private_key))
    else:
        raise InternalKeyError(ENV_PRIVATE_KEY, f"set {ENV_PRIVATE_KEY} or {ENV_PRIVATE_KEY}_FILE "
                                                "(only the embedded SQLite default generates one)")
    return InternalTokenSigner(key, ttl=timedelta(seconds=ttl_seconds))


@dataclass
class GatewayRuntime:
    settings: GatewaySettings
    proxy: Proxy
    limiter: RateLimiter
    oidc: OidcVerifier | None
    kernel: Kernel | None = None
    signer: InternalTokenSigner | None = None
    openapi_cache: dict[str, Any] | None = field(default=None, repr=False)
    trusted_proxies: tuple[Network, ...] = ()
    refusals: RefusalSummary = field(default_factory=RefusalSummary)

    @classmethod
    def from_settings(cls, settings: GatewaySettings, proxy: Proxy) -> GatewayRuntime:
        return cls(settings=settings, proxy=proxy,
                   limiter=RateLimiter(rate=settings.rate_limit_per_second,
                                       burst=settings.rate_limit_burst),
                   oidc=settings.oidc_verifier(),
                   trusted_proxies=networks(settings.trusted_proxies))

    def start(self, kernel: Kernel) -> None:
        """Startup hook: a missing signing key refuses start-up, naming the variable."""
        self.signer = load_signer(kernel.settings.home, embedded=is_sqlite(kernel.engine),
                                  ttl_seconds=self.settings.internal_token_ttl_seconds)
        self.kernel = kernel
        # The gateway's heads are signed so the services witnessing its chain can check them.
        kernel.head_signer = self.signer.sign_detached
        # Its audit checkpoints are signed with a key derived from the same secret.
        kernel.audit_key = audit.checkpoint_key(self.signer.secret_material())
        log.info("gateway.edge_ready", services=sorted(self.proxy.services),
                 oidc=self.oidc is not None)

    async def close_on_stop(self, kernel: Kernel) -> None:
        """Background job: keep the pooled connections until the process stops."""
        await kernel.stop.wait()
        await asyncio.shield(self.proxy.aclose())

    @property
    def engine(self) -> Engine:
        if self.kernel is None:
            raise NotConfigured("the gateway is still starting")
        return self.kernel.engine

    def sign(self, caller: Caller, *, audience: str | list[str], request_id: str | None,
             routes: Mapping[str, str]) -> str:
        if self.signer is None:
            raise NotConfigured("the gateway is still starting")
        return self.signer.sign(replace(caller, request_id=request_id), audience=audience,
                                routes=routes)


def runtime_from_scope(scope: Scope) -> GatewayRuntime | None:
    app = scope.get("app")
    return getattr(getattr(app, "state", None), "gateway", None)


def runtime_of(connection: HTTPConnection) -> GatewayRuntime:
    """The running edge, or 503: an app built without `create_app` serves nothing public."""
    runtime = runtime_from_scope(connection.scope)
    if runtime is None:
        raise NotConfigured("the gateway's edge is not installed (build it with create_app)")
    return runtime
