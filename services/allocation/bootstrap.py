"""Composition root of the allocation service: verifies and loads the model the protocol
names and the bus keys, once, into `AllocationDeps`; routes and the consumer receive them.
Any mismatch refuses start-up, naming the protocol key or setting to fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from services.core import audit
from services.core.db import is_sqlite, unit_of_work
from services.core.runner import Kernel
from services.core.sealing import Keyring, Recipient, load_keyring, load_recipient

from .domain import ClusterPredictor, ModelArtifactError, read_model

log = structlog.get_logger(__name__)


class StartupRefused(RuntimeError):
    """The service must not run with this protocol or model; the message says why."""


@dataclass(frozen=True)
class AllocationDeps:
    kernel: Kernel
    predictor: ClusterPredictor  # the verified model of the protocol
    bus_keyring: Keyring  # opens the saves sealed to this service
    randomization_key: Recipient  # the cluster is sealed to randomization


def bootstrap(kernel: Kernel) -> AllocationDeps:
    predictor = load_active_model(kernel)
    keyring, seal_to = load_bus_keys(kernel)
    return AllocationDeps(kernel, predictor, keyring, seal_to)


def load_active_model(kernel: Kernel) -> ClusterPredictor:
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
    with unit_of_work(kernel.engine) as session:
        audit.append(session, actor=f"service:{kernel.name}", role="system",
                     action="model.loaded", entity_type="model", entity_id=model.version,
                     after={"sha256": model.sha256, "path": rules.model.path,
                            "synthetic": bool(model.manifest.get("synthetic"))})
    log.info("allocation.model_loaded", model_version=model.version, sha256=model.sha256,
             synthetic=bool(model.manifest.get("synthetic")))
    return predictor


def load_bus_keys(kernel: Kernel) -> tuple[Keyring, Recipient]:
    """Its own bus key (opens the saves sealed to it) and randomization's public key (the
    cluster is sealed to it); a missing key refuses start-up, naming its setting."""
    embedded, home = is_sqlite(kernel.engine), kernel.settings.home
    keyring = load_keyring(kernel.name, home, embedded=embedded)
    seal_to = load_recipient("randomization", home, embedded=embedded)
    log.info("allocation.bus_keys_loaded", key_id=keyring.key_id,
             randomization_key_id=seal_to.key_id)
    return keyring, seal_to
