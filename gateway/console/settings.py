"""Console settings (`TAILOR_CONSOLE_…`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_CONSOLE_", extra="ignore")

    # A session ends after this long without a request, and in any case after the
    # absolute limit (a stolen cookie is not good for a working week).
    idle_minutes: int = Field(default=30, gt=0, le=24 * 60)
    absolute_hours: int = Field(default=12, gt=0, le=7 * 24)
    # Browsers keep Secure cookies on http://localhost, so the embedded default works too.
    secure_cookie: bool = True
    # OIDC authorization code flow with PKCE (the gateway's issuer and audience apply).
    oidc_client_id: str | None = None
    oidc_authorization_endpoint: str | None = None
    oidc_token_endpoint: str | None = None
    oidc_scope: str = "openid"
    # Where the identity provider sends the browser back; the request's own URL if unset.
    oidc_redirect_uri: str | None = None
