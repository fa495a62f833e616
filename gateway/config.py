"""The gateway's one settings object. Its sections keep their own variable prefixes
(`TAILOR_GATEWAY_*` for the edge, `TAILOR_REDCAP_*`, `TAILOR_CONSOLE_*`), so a deployment's
environment reads as before; the process reads them once, here."""

from __future__ import annotations

from dataclasses import dataclass

from .console.settings import ConsoleSettings
from .redcap.settings import RedcapSettings
from .settings import GatewaySettings


@dataclass(frozen=True)
class GatewayConfig:
    edge: GatewaySettings  # limits, proxy, sign-in, trusted proxies
    redcap: RedcapSettings  # the REDCap API, the DET and the write-back
    console: ConsoleSettings  # the web console's sign-on and sessions

    @classmethod
    def from_environment(cls, *, edge: GatewaySettings | None = None,
                         console: ConsoleSettings | None = None) -> GatewayConfig:
        """Read from the environment; a test may hand in a section it built itself."""
        return cls(edge=edge or GatewaySettings(), redcap=RedcapSettings(),
                   console=console or ConsoleSettings())
