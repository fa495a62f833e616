"""Composition root of the allocation service."""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI

from services.core import audit
from services.core.db import is_sqlite, unit_of_work
from services.core.runner import Kernel, ServiceSpec, build_app
from services.core.sealing import load_keyring, load_recipient

from . import handlers
from .api import router
from .domain import ClusterPredictor, ModelArtifactError, read_model

log = structlog.get_logger(__name__)


class StartupRefused(RuntimeError):
    """The service must not run with this protocol or model; the message says why."""


def load_active_model(kernel: Kernel) -> None:
    """Load and verify the model the protocol names; refuse to start on any mismatch."""
    protocol = kernel.protocol
    rules = protocol.prediction
    if "site" in protocol.randomization.stratify_by and not rules.site_field:
        raise StartupRefused("allocation.site_field: randomization stratifies by site, so "
                             "cluster_assigned must carry the site; name its REDCap field")
    try:
        # a relative path is taken from the working directory, as the CLI does
        model = read_model(Path(rules.model.path), expected_sha256=rules.model.sha256,
                           clusters=[c.key for c in protocol.clusters])
    except ModelArtifactError as exc:
        log.error("allocation.model_refused", field=exc.field, error=exc.detail)
        raise StartupRefused(
            f"allocation service refuses to start: {exc.detail} "
            f"(protocol key {exc.field}, file {rules.model.path})") from exc
    predictor = ClusterPredictor.from_rules(model, rules)
    kernel.extras["predictor"] = predictor  # read by the routes and the consumer factory
    with unit_of_work(kernel.engine) as session:
        audit.append(session, actor=f"service:{kernel.name}", role="system",
                     action="model.loaded", entity_type="model", entity_id=model.version,
                     after={"sha256": model.sha256, "path": rules.model.path,
                            "synthetic": bool(model.manifest.get("synthetic"))})
    log.info("allocation.model_loaded", model_version=model.version, sha256=model.sha256,
             synthetic=bool(model.manifest.get("synthetic")))


def load_bus_keys(kernel: Kernel) -> None:
    """Its own bus key (opens the saves sealed to it) and randomization's public key (the
    cluster is sealed to it); a missing key refuses start-up, naming its setting."""
    embedded, home = is_sqlite(kernel.engine), kernel.settings.home
    keyring = kernel.extras["bus_keyring"] = load_keyring(kernel.name, home, embedded=embedded)
    seal_to = kernel.extras["randomization_key"] = load_recipient("randomization", home,
                                                                  embedded=embedded)
    log.info("allocation.bus_keys_loaded", key_id=keyring.key_id,
             randomization_key_id=seal_to.key_id)


SPEC = ServiceSpec(
    name="allocation",
    title="Tailor allocation",
    description="MPI-D scoring and cluster prediction (cluster is unblinding data).",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    consumers=handlers.consumers,
    subscriptions=[handlers.FORM_SAVED],
    on_startup=[load_active_model, load_bus_keys],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
