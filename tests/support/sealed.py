"""Publish as the producers do: payloads sealed to their consumer's bus key (the keys the
autouse `bus_keys` fixture configured), and read what only a key holder can read."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from services.core.digests import env_name as digest_env
from services.core.events import ClusterAssigned, Envelope, FormSaved, SealedCluster
from services.core.sealed_events import seal_form_saved
from services.core.sealing import (
    RECIPIENTS,
    Keyring,
    Recipient,
    ensure_bus_keys,
    env_name,
    key_files,
    load_keyring,
    load_recipient,
)

_NOWHERE = Path("/nonexistent")  # keys come from the environment in tests


def configure_bus_keys(folder: Path, env: pytest.MonkeyPatch) -> None:
    """Every consumer's bus key pair and the digest keys, configured through the environment
    as a deployment does."""
    ensure_bus_keys(folder, (*RECIPIENTS, "gateway"))
    for service in (*RECIPIENTS, "gateway"):  # the gateway's: SMART stage options
        private, public = key_files(folder, service)
        env.setenv(f"{env_name(service, public=False)}_FILE", str(private))
        env.setenv(f"{env_name(service, public=True)}_FILE", str(public))
    for service in ("gateway", "safety"):
        env.setenv(digest_env(service), base64.b64encode(os.urandom(32)).decode())


def recipient(service: str) -> Recipient:
    return load_recipient(service, _NOWHERE, embedded=False)


def keyring(service: str) -> Keyring:
    return load_keyring(service, _NOWHERE, embedded=False)


def form_saved_for(consumer: str, saved: FormSaved, *, correlation_id: str | None = None,
                   event_id: str | None = None) -> Envelope:
    """The envelope the gateway publishes for `consumer` (fields as given, not cut)."""
    sealed = seal_form_saved(recipient(consumer), saved)
    return Envelope(subject=sealed.subject, producer="gateway", record=saved.record,
                    correlation_id=correlation_id, data=sealed.model_dump(mode="json"),
                    **({"id": event_id} if event_id else {}))


def cluster_assigned_event(record: str, cluster: str, probabilities: dict[str, float], *,
                           model_version: str = "test", low_confidence: bool = False,
                           site: str | None = None, pilot: bool = False) -> ClusterAssigned:
    sealed = recipient("randomization").seal_json(
        SealedCluster(cluster=cluster, probabilities=probabilities).model_dump(),
        subject=ClusterAssigned.subject, record=record)
    return ClusterAssigned(record=record, sealed=sealed, model_version=model_version,
                           low_confidence=low_confidence, site=site, pilot=pilot)


def opened_cluster(event: ClusterAssigned) -> SealedCluster:
    """What randomization reads (only its key opens it)."""
    return SealedCluster.model_validate(keyring("randomization").open_json(
        event.sealed, subject=ClusterAssigned.subject, record=event.record))
