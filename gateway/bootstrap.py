"""Composition root of the gateway: builds `GatewayDeps` once from the running kernel — the
public edge (made with the app, since its middleware exists before the kernel does, and
given its signing key here) and the REDCap integration; routes, the consumers and the
jobs receive them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.core.runner import Kernel

from .config import GatewayConfig
from .redcap import setup as redcap_setup
from .redcap.deps import RedcapDeps
from .security.runtime import GatewayRuntime


@dataclass(frozen=True)
class GatewayDeps:
    kernel: Kernel
    # Signer, proxy, limits, OIDC (also on app.state.gateway, for the middleware); None in
    # the bare SPEC without `create_app`'s edge (tests of the REDCap side and the kernel).
    edge: GatewayRuntime | None
    redcap: RedcapDeps
    config: GatewayConfig


def bootstrap_for(edge: GatewayRuntime | None,
                  config: GatewayConfig | None = None) -> Callable[[Kernel], GatewayDeps]:
    """`create_app` hands in the config it read for the edge; the bare SPEC reads it here."""
    def bootstrap(kernel: Kernel) -> GatewayDeps:
        settings = config or GatewayConfig.from_environment()
        if edge is not None:
            edge.start(kernel)  # a missing signing key refuses start-up, naming the variable
        return GatewayDeps(kernel, edge, redcap_setup.build(kernel, settings.redcap), settings)
    return bootstrap


async def run_redcap(deps: GatewayDeps) -> None:
    await redcap_setup.run(deps.kernel, deps.redcap)


async def close_on_stop(deps: GatewayDeps) -> None:
    if deps.edge is not None:
        await deps.edge.close_on_stop(deps.kernel)
