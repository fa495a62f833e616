"""An OIDC identity provider of our own for the console's sign-in: an authorization
endpoint that approves at once (as a person who is already signed in at their
organisation), and a token endpoint that checks the PKCE verifier before it hands out an
access token signed by the test's issuer key."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Form
from fastapi.responses import JSONResponse, RedirectResponse

from tests.integration.gateway.support import IdentityProvider


@dataclass
class Approvals:
    role: str = "monitor"
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code → (challenge, redirect)
    refused_verifiers: int = 0


def provider_app(idp: IdentityProvider, approvals: Approvals) -> FastAPI:
    app = FastAPI()

    @app.get("/authorize")
    def authorize(redirect_uri: str, state: str, code_challenge: str,
                  code_challenge_method: str, client_id: str) -> RedirectResponse:
        assert code_challenge_method == "S256" and client_id == "tailor-console"
        code = secrets.token_urlsafe(16)
        approvals.codes[code] = (code_challenge, redirect_uri)
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", 302)

    @app.post("/token")
    def token(code: Annotated[str, Form()], code_verifier: Annotated[str, Form()],
              redirect_uri: Annotated[str, Form()]) -> JSONResponse:
        challenge, redirect = approvals.codes.pop(code, ("", ""))
        digest = hashlib.sha256(code_verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).decode().rstrip("=") != challenge or redirect != redirect_uri:
            approvals.refused_verifiers += 1
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse({"access_token": idp.token(approvals.role), "token_type": "Bearer"})

    return app
