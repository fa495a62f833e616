"""Rebuild the read model from the start of the stream (`tailor reports rebuild`).

Reads every retained message on the reports consumer's subjects with an ephemeral,
unacknowledged consumer (the live durable is untouched), then, in ONE transaction, empties
the read model and the consumer's inbox and applies the messages in stream order through
the same `projection.apply` the live consumer uses. Either the whole rebuild commits or
nothing changes. Messages the live consumer would refuse (poison) are skipped the same way.
The inbox ends up holding every replayed id, so the live consumer skips what the rebuild
already applied. Figures are compared before and after, and the rebuild is audited.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.engine import Engine

from services.core import audit, inbox
from services.core.bus import STREAM, TlsFiles
from services.core.consumers import parse_envelope
from services.core.db import unit_of_work
from services.core.errors import PermanentError
from services.core.protocol import TrialProtocol
from services.core.sealing import Keyring

from . import repository, service
from .handlers import DURABLE
from .projection import SUBJECTS, apply


@dataclass(frozen=True)
class StreamRead:
    messages: list[bytes]
    first_seq: int  # the stream's first retained sequence (1 = nothing was ever removed)


@dataclass
class RebuildResult:
    events: int
    skipped: int
    first_seq: int
    before: dict[str, Any]
    after: dict[str, Any]
    changed: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.changed


async def read_stream(nats_url: str, subjects: tuple[str, ...] = SUBJECTS, *,
                      credentials: Path | None = None, tls: TlsFiles | None = None,
                      batch: int = 256) -> StreamRead:
    """Every retained message on `subjects`, through a consumer of its own: only the
    provisioner's credentials may make one (a service may only read its durables)."""

    async def quiet(_exc: Exception) -> None:  # the caller reports the failure once
        return None

    auth: dict[str, Any] = {}
    if credentials is not None:
        auth["nkeys_seed"] = str(credentials)
    if tls is not None:
        auth["tls"] = tls.context()
    nc = await nats.connect(nats_url, name="tailor-reports-rebuild", connect_timeout=5,
                            max_reconnect_attempts=3, error_cb=quiet, **auth)
    try:
        js = nc.jetstream(timeout=10)
        state = (await js.stream_info(STREAM)).state
        if not state.messages:
            return StreamRead([], state.first_seq)
        info = await js.add_consumer(STREAM, ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE,
            filter_subjects=list(subjects), inactive_threshold=60))
        sub = await js.pull_subscribe_bind(durable=info.name, stream=STREAM)
        out: list[bytes] = []
        stalled = 0
        while True:
            pending = (await js.consumer_info(STREAM, info.name)).num_pending
            if not pending:
                break
            try:
                msgs = await sub.fetch(min(batch, pending), timeout=5)
                stalled = 0
            except TimeoutError:
                stalled += 1
                if stalled >= 5:  # the server says messages wait, but none arrive
                    raise RuntimeError(f"reading the stream stalled with {pending} messages "
                                       "pending; nothing was changed") from None
                continue
            out += [m.data for m in msgs]
        await js.delete_consumer(STREAM, info.name)
        return StreamRead(out, state.first_seq)
    finally:
        await nc.close()


def _digest(figures: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(figures, sort_keys=True).encode()).hexdigest()


def rebuild(engine: Engine, protocol: TrialProtocol, keyring: Keyring, stream: StreamRead, *,
            as_of: date,
            actor: str = "operator:tailor-reports-rebuild") -> RebuildResult:
    with unit_of_work(engine) as session:
        before = service.blinded_figures(session, protocol=protocol, as_of=as_of)
        repository.clear_read_model(session, [DURABLE])
        applied = skipped = 0
        for data in stream.messages:
            try:
                env = parse_envelope(data)
                with session.begin_nested():
                    if inbox.claim(session, DURABLE, env.id):
                        apply(session, env, protocol, keyring)
                        applied += 1
            except PermanentError:
                skipped += 1
        after = service.blinded_figures(session, protocol=protocol, as_of=as_of)
        changed = sorted(k for k in after if after[k] != before.get(k))
        audit.append(session, actor=actor, role="system", action="read_model.rebuilt",
                     entity_type="read_model", entity_id="reports",
                     after={"events": applied, "skipped": skipped, "first_seq": stream.first_seq,
                            "as_of": as_of.isoformat(), "changed": changed,
                            "figures_sha256": _digest(after)})
    return RebuildResult(applied, skipped, stream.first_seq, before, after, changed)
