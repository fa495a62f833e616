"""JetStream streams take their replicas and limits from settings; a cluster too small for
the replicas asked for stops start-up with one line naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js.api import DiscardPolicy

from services.core.bus import DLQ_STREAM, STREAM, Bus
from services.core.runner import ServiceSpec, start_kernel
from tailor_cli.natsd import NatsServer
from tests.support import harness

pytestmark = pytest.mark.deploy


async def test_stream_limits_come_from_settings(nats_server: NatsServer) -> None:
    bus = Bus(nats_server.url, "test", replicas=1, max_bytes=1 << 20)
    await bus.connect(attempts=5)
    try:
        await bus.ensure_streams()
        assert bus.js is not None
        info = await bus.js.stream_info(STREAM)
        assert info.config.max_bytes == 1 << 20
        assert info.config.discard == DiscardPolicy.NEW  # a full stream refuses, never drops
        assert (await bus.js.stream_info(DLQ_STREAM)).config.num_replicas == 1
    finally:
        await bus.close()


async def test_more_replicas_than_nodes_stops_start_up_naming_the_setting(
        tmp_path: Path, nats_server: NatsServer) -> None:
    from services.core.protocol import load_protocol
    from services.core.settings import ServiceSettings

    config = harness.test_settings(tmp_path, nats_server.url, nats_stream_replicas=3)
    spec = ServiceSpec(name="safety", migrations=Path("services/safety/migrations"))
    own = ServiceSettings(name="safety", database_url=f"sqlite:///{tmp_path / 'safety.db'}")
    with pytest.raises(Exception, match=r"TAILOR_NATS_URL: JetStream refused the streams") as err:
        await start_kernel(spec, config, own, load_protocol(harness.PROTOCOL))
    assert "\n" not in str(err.value)
