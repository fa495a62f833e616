"""The REDCap integration's typed dependencies, built once by `setup.build` (part of the
gateway's composition root) and handed to the DET route and the background loops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.auth.rate_limit import RateLimiter
from services.core.periodic import Wake

from .client import RedcapClient
from .rights_watch import RightsState
from .service import FormKeys
from .settings import RedcapSettings


@dataclass(frozen=True)
class DetLimits:
    accepted: RateLimiter  # one bucket for every trigger with the right secret
    refused: RateLimiter  # per sender address, for wrong or missing secrets


@dataclass(frozen=True)
class RedcapDeps:
    settings: RedcapSettings
    det_limits: DetLimits
    trigger_wake: Wake = field(default_factory=Wake)  # a DET or the sweep stored a trigger
    write_wake: Wake = field(default_factory=Wake)
    # Only when the API URL and token are set (else DETs are stored and nothing syncs):
    client: RedcapClient | None = None
    keys: FormKeys | None = None  # the consumers' bus keys and the digest key
    rights: RightsState = field(default_factory=RightsState)
    # The survey-link routes' secret, read at first use (services/core/survey_links.py).
    survey_link_secret: Callable[[], bytes] = lambda: b""
