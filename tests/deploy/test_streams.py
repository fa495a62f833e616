"""JetStream streams take their replicas and limits from settings, read by the provisioner
(`tailor nats provision`), which alone creates streams; a cluster too small for the
replicas asked for stops provisioning with one line naming the setting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js.api import DiscardPolicy

from services.core.bus import DLQ_STREAM, STREAM
from tailor_cli.natsd import NatsServer
from tests.support.harness import provisioner_bus

pytestmark = pytest.mark.deploy


async def test_stream_limits_come_from_settings(nats_server: NatsServer) -> None:
    bus = provisioner_bus(nats_server.url, replicas=1, max_bytes=1 << 20)
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


def _provision(tmp_path: Path, server: NatsServer, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update(TAILOR_HOME=str(tmp_path / "home"), TAILOR_NATS_URL=server.url,
               TAILOR_NATS_CREDS_FILE=str(server.credentials()), TAILOR_LOG_JSON="false",
               COLUMNS="200", **settings)
    return subprocess.run([sys.executable, "-m", "tailor_cli", "nats", "provision"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path.cwd())


def test_more_replicas_than_nodes_stops_provisioning_naming_the_setting(
        tmp_path: Path, nats_server: NatsServer) -> None:
    done = _provision(tmp_path, nats_server, TAILOR_NATS_STREAM_REPLICAS="3")
    assert done.returncode == 1
    [line] = [x for x in done.stdout.splitlines() if "not provisioned" in x]
    assert "TAILOR_NATS_STREAM_REPLICAS=3" in line and "non-clustered" in line


def test_provisioning_is_idempotent_and_applies_the_size_limit(
        tmp_path: Path, nats_server: NatsServer) -> None:
    for _ in range(2):
        done = _provision(tmp_path, nats_server, TAILOR_NATS_STREAM_MAX_BYTES=str(1 << 20))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "provisioned" in done.stdout

    async def limit() -> int:
        bus = provisioner_bus(nats_server.url)
        await bus.connect(attempts=5)
        try:
            assert bus.js is not None
            return int((await bus.js.stream_info(STREAM)).config.max_bytes or 0)
        finally:
            await bus.close()

    assert asyncio.run(limit()) == 1 << 20
