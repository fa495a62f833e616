"""Item 15 of issue 12: an internal token is good once across every replica of a service,
not once per process. Two app instances (separate processes' worth of state: each its own
home, so its own verifier and in-memory set) share one database, as replicas do."""

from __future__ import annotations

import shutil
from pathlib import Path

from services.core.internal_token import (
    HEADER,
    Caller,
    InternalTokenSigner,
    ensure_keypair,
    load_private_key,
    route_of,
)
from services.core.roles import Role
from services.core.runner import ServiceSpec
from tailor_cli.natsd import NatsServer
from tests.support.harness import running_service

SPEC = ServiceSpec(name="allocation", migrations=Path("services/allocation/migrations"))
PATH = "/v1/audit/verify"


async def test_a_token_used_on_one_replica_is_refused_by_the_other(
        tmp_path: Path, nats_server: NatsServer, database_url: str) -> None:
    first, second = tmp_path, tmp_path / "replica-b"
    keys = ensure_keypair(first / "keys")
    shutil.copytree(first / "keys", second / "keys")  # the same gateway public key
    (second / "nats").symlink_to(first / "nats")  # the embedded bus's credentials
    signer = InternalTokenSigner(load_private_key(keys.private_key.read_bytes()))
    token = signer.sign(Caller(subject="monitor", role=Role.MONITOR), audience="allocation",
                        routes={"allocation": route_of("GET", PATH)})
    async with (running_service(SPEC, home=first, nats_url=nats_server.url,
                                database_url=database_url) as a,
                running_service(SPEC, home=second, nats_url=nats_server.url,
                                database_url=database_url) as b):
        used = await a.client.get(PATH, headers={HEADER: token})
        assert used.status_code == 200, used.text
        replayed = await b.client.get(PATH, headers={HEADER: token})
        assert replayed.status_code == 401, replayed.text
        assert "used before" in replayed.text
        fresh = signer.sign(Caller(subject="monitor", role=Role.MONITOR), audience="allocation",
                            routes={"allocation": route_of("GET", PATH)})
        assert (await b.client.get(PATH, headers={HEADER: fresh})).status_code == 200
