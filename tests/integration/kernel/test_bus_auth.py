"""The locked bus, against a real nats-server run with the generated users and permissions:
anonymous connections are refused; a service's credentials publish only its own facts,
read only through its own durables, and cannot make a consumer; a consumer refuses an
event whose producer does not own its subject."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from services.core import metrics
from services.core.bus import Bus
from services.core.bus_contract import inbox_prefix
from services.core.consumers import Consumer, to_spec
from services.core.db import make_engine
from services.core.events import Allocated, ClusterAssigned, Envelope
from services.core.migrations import run_migrations
from tailor_cli.natsd import NatsServer
from tests.support.harness import eventually, provisioner_bus
from tests.support.sealed import cluster_assigned_event


class Violations:
    """What the server refused, as nats-py reports it to the error callback."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def record(self, exc: Exception) -> None:
        self.seen.append(str(exc).lower())

    def about(self, subject: str) -> bool:
        return any("permissions violation" in s and subject.lower() in s for s in self.seen)


async def _as(server: NatsServer, service: str) -> tuple[Client, Violations]:
    violations = Violations()
    nc = await nats.connect(server.url, nkeys_seed=str(server.credentials(service)),
                            inbox_prefix=inbox_prefix(service), error_cb=violations.record,
                            max_reconnect_attempts=0)
    return nc, violations


async def _admin(server: NatsServer) -> Bus:
    bus = provisioner_bus(server.url)
    await bus.connect(attempts=20)
    return bus


def _cluster_assigned(producer: str, record: str) -> bytes:
    event = cluster_assigned_event(record, "c1", {"c1": 1.0}, model_version="m")
    return Envelope(subject=ClusterAssigned.subject, producer=producer, record=record,
                    data=event.model_dump(mode="json")).model_dump_json().encode()


async def test_an_anonymous_connection_is_refused(nats_server: NatsServer) -> None:
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(nats_server.url, max_reconnect_attempts=0, allow_reconnect=False,
                           connect_timeout=2)


async def test_a_wrong_seed_is_refused(nats_server: NatsServer, tmp_path: Path) -> None:
    from services.core.nats_auth import ensure_seed

    ensure_seed(tmp_path / "stranger.nk")
    with pytest.raises(Exception, match="(?i)authorization"):
        await nats.connect(nats_server.url, nkeys_seed=str(tmp_path / "stranger.nk"),
                           max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)


async def test_a_service_publishes_its_own_facts_and_no_one_elses(nats_server: NatsServer) -> None:
    nc, violations = await _as(nats_server, "notifications")
    js = nc.jetstream(timeout=1)
    forged = Allocated.subject  # randomization's fact
    with pytest.raises(Exception):  # the server drops it: no acknowledgement
        await js.publish(forged, b"{}")
    await eventually(lambda: violations.about(forged))
    ack = await js.publish("trial.v1.notifications.timepoint_completed", b"{}")
    assert ack.stream == "TRIAL"
    admin = await _admin(nats_server)
    assert admin.js is not None
    with pytest.raises(NotFoundError):
        await admin.js.get_last_msg("TRIAL", forged)
    await nc.close()
    await admin.close()


async def test_a_service_cannot_subscribe_to_what_it_does_not_consume(nats_server: NatsServer) -> None:
    nc, violations = await _as(nats_server, "notifications")
    await nc.subscribe(ClusterAssigned.subject)
    await nc.subscribe("trial.v1.>")
    await eventually(lambda: violations.about(ClusterAssigned.subject) and violations.about("trial.v1.>"))
    await nc.close()


async def test_a_service_cannot_make_or_read_a_consumer_on_anothers_subject(
        nats_server: NatsServer) -> None:
    nc, violations = await _as(nats_server, "notifications")
    js = nc.jetstream(timeout=1)
    with pytest.raises(Exception):
        await js.add_consumer("TRIAL", ConsumerConfig(durable_name="notifications-peek",
                                                      filter_subject=ClusterAssigned.subject))
    await eventually(lambda: violations.about(".CREATE.TRIAL.notifications-peek"))
    with pytest.raises(Exception):  # randomization's durable
        sub = await js.pull_subscribe_bind(durable="randomization-cluster-assigned", stream="TRIAL")
        await sub.fetch(1, timeout=1)
    await eventually(lambda: violations.about("MSG.NEXT.TRIAL.randomization-cluster-assigned"))
    with pytest.raises(Exception):  # a message by sequence number
        await js.get_msg("TRIAL", 1)
    await eventually(lambda: violations.about("$JS.API.STREAM.MSG.GET.TRIAL"))
    admin = await _admin(nats_server)
    assert admin.js is not None
    names = {c.name for c in await admin.js.consumers_info("TRIAL")}
    assert "notifications-peek" not in names and "randomization-cluster-assigned" in names
    await nc.close()
    await admin.close()


async def test_a_forged_producer_is_refused_by_the_consumer(nats_server: NatsServer,
                                                            tmp_path: Path) -> None:
    """Only the provisioner could put it there now; the consumer checks all the same."""
    url = f"sqlite:///{tmp_path / 'consumer.db'}"
    run_migrations(Path("services/randomization/migrations"), url)
    engine = make_engine(url)
    handled: list[str] = []
    consumer = Consumer("randomization-cluster-assigned", (ClusterAssigned.subject,),
                        lambda _s, env: handled.append(env.record or ""))
    bus = Bus(nats_server.url, "randomization", credentials=nats_server.credentials("randomization"))
    await bus.connect(attempts=20)
    stop = asyncio.Event()
    bus.start_consumer(to_spec(consumer, engine, "randomization", wake=lambda: None,
                               default_max_deliver=3), stop)
    refused = metrics.CONSUMER_REFUSED.labels("randomization", consumer.durable, "producer")
    before = refused._value.get()
    admin = await _admin(nats_server)
    await admin.publish(ClusterAssigned.subject, _cluster_assigned("gateway", "FORGED"), msg_id="f1")
    await admin.publish(ClusterAssigned.subject, _cluster_assigned("allocation", "REAL"), msg_id="r1")
    await eventually(lambda: handled == ["REAL"] and refused._value.get() == before + 1)
    assert admin.js is not None
    letter = await admin.js.get_last_msg("TRIAL_DLQ", "trial.dlq.randomization-cluster-assigned")
    assert b"FORGED" in (letter.data or b"")
    assert letter.headers and letter.headers["Tailor-Dead-Letter-Reason"] == "terminated"
    stop.set()
    await bus.close()
    await admin.close()
    engine.dispose()


async def test_tls_with_a_generated_ca(tmp_path: Path) -> None:
    """The embedded generator's CA and server certificate: a service verifies the server
    and authenticates; a client that will not speak TLS is refused."""
    server = NatsServer(store_dir=tmp_path / "nats", tls=True).start()
    try:
        assert server.url.startswith("tls://") and server.tls_files is not None
        bus = Bus(server.url, "allocation", credentials=server.credentials("allocation"),
                  tls=server.tls_files)
        await bus.connect(attempts=3)
        assert bus.nc is not None and bus.nc.is_connected
        ack = await bus.publish("trial.v1.allocation.needs_review", b"{}", msg_id="over-tls")
        assert ack.stream == "TRIAL"
        await bus.close()
        with pytest.raises(Exception):
            await nats.connect(f"nats://127.0.0.1:{server.port}", allow_reconnect=False,
                               nkeys_seed=str(server.credentials("allocation")),
                               max_reconnect_attempts=0, connect_timeout=2)
    finally:
        server.kill()
