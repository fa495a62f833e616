"""Append-only, hash-chained audit trail (one chain per service database).

hash = SHA-256 over a canonical JSON encoding of the entry including `prev_hash` and
`seq`, so a changed, removed or reordered row breaks the chain at that row. UPDATE and
DELETE are refused by the database itself (triggers created in the kernel migration).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, Index, Text, func, insert, text
from sqlmodel import Field, Session, SQLModel, select

from .db import UtcDateTime

GENESIS = "0" * 64


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    # Each listing filter with `seq` after it: `WHERE record = ? AND seq > ? ORDER BY seq
    # LIMIT n` (keyset paging, audit_api.py) reads one index range, however long the chain.
    __table_args__ = (*(Index(f"ix_audit_entry_{name}_seq", name, "seq") for name in
                        ("action", "actor", "entity_type", "entity_id", "record")),
                      Index("ix_audit_entry_at", "at"))

    seq: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    actor: str
    role: str
    action: str
    entity_type: str
    entity_id: str
    record: str | None = Field(default=None)
    before: str | None = Field(default=None, sa_column=Column(Text))
    after: str | None = Field(default=None, sa_column=Column(Text))
    reason: str | None = None
    correlation_id: str | None = None
    prev_hash: str
    hash: str = Field(unique=True)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc_iso(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def _utc_iso(at: datetime) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC by construction.
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def entry_hash(e: AuditEntry) -> str:
    body = {
        "seq": e.seq, "at": _utc_iso(e.at), "actor": e.actor, "role": e.role,
        "action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
        "record": e.record, "before": e.before, "after": e.after, "reason": e.reason,
        "correlation_id": e.correlation_id, "prev_hash": e.prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _lock_chain(session: Session) -> None:
    """Serialize appends so two writers never chain from the same head."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("SELECT pg_advisory_xact_lock(72616469)")
    # SQLite: BEGIN IMMEDIATE (see db.make_engine) already serializes writers.


_TABLE = AuditEntry.__table__  # type: ignore[attr-defined]
_INSERT = insert(_TABLE)
# Built once: composing the statement cost more than running it, once per transaction.
_LAST = select(_TABLE.c.seq, _TABLE.c.hash).order_by(_TABLE.c.seq.desc()).limit(1)  # type: ignore[call-overload]
_HEAD = "audit.head"  # session.info key: (transaction, seq, hash) of the last append


def _chain_head(session: Session) -> tuple[int, str]:
    """(seq, hash) to chain from. Within one transaction the chain is locked after the first
    append, so the head written last is still the head: no query, no lock per entry."""
    transaction = _innermost(session)
    cached = session.info.get(_HEAD)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1], cached[2]
    _lock_chain(session)
    # Two columns on the Core connection, not the whole entry through the ORM.
    last = session.connection().execute(_LAST).first()
    return (last[0], last[1]) if last else (0, GENESIS)


def _innermost(session: Session) -> object:
    """The transaction an append belongs to: a savepoint that is rolled back takes its
    entries with it, so the cached head is only trusted inside the same (sub)transaction."""
    return session.get_nested_transaction() or session.get_transaction()


def appended_head(session: Session) -> tuple[int, str] | None:
    """(seq, hash) this session's current transaction appended last, if it appended."""
    cached = session.info.get(_HEAD)
    if cached is None or cached[0] is not _innermost(session):
        return None
    return cached[1], cached[2]


def continue_chain(session: Session, head: tuple[int, str]) -> None:
    """Chain this session's next append from `head`: the last entry another session appended
    on the same connection, in the same database transaction (it holds the chain's lock).
    Saves a session joining that transaction (a message of a consumed batch) the lock and
    the head query."""
    session.connection()  # begins the session's transaction, which the head is tied to
    session.info[_HEAD] = (_innermost(session), *head)


def head(session: Session) -> AuditEntry | None:
    return session.exec(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).first()  # type: ignore[union-attr]


def append(
    session: Session,
    *,
    actor: str,
    role: str,
    action: str,
    entity_type: str,
    entity_id: str,
    record: str | None = None,
    before: Any = None,
    after: Any = None,
    reason: str | None = None,
    correlation_id: str | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    seq, prev_hash = _chain_head(session)
    row: dict[str, Any] = {
        "seq": seq + 1, "at": at or datetime.now(UTC), "actor": actor, "role": role,
        "action": action, "entity_type": entity_type, "entity_id": str(entity_id),
        "record": record, "before": None if before is None else canonical_json(before),
        "after": None if after is None else canonical_json(after), "reason": reason,
        "correlation_id": correlation_id, "prev_hash": prev_hash,
    }
    row["hash"] = _row_hash(row)
    # A Core insert of a plain row: no ORM object is built or kept in the session's identity
    # map (that made every later flush of a long transaction slower, quadratic over
    # thousands of appends).
    session.flush()  # the audited change first, as callers expect of an append
    session.connection().execute(_INSERT, row)
    session.info[_HEAD] = (_innermost(session), row["seq"], row["hash"])
    session.info["audit_appended"] = True  # the beacon announces the head after commit
    return AuditEntry.model_construct(**row)  # no validation: the row was just written


def _row_hash(row: dict[str, Any]) -> str:
    """`entry_hash` of a row about to be inserted (same bytes, without an entry object)."""
    at = _utc_iso(row["at"])
    values = tuple(row[name] for name in _HASHED)
    try:
        text = _body_json(values, at)
    except TypeError:
        body = dict(zip(_HASHED, values, strict=True))
        body["at"] = at
        text = _encode(body)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    length: int
    head_hash: str
    first_broken_seq: int | None = None
    problem: str | None = None
    # How the verdict was reached, not part of it: entries re-hashed, and the signed
    # checkpoint the verification started from (None: from the first entry).
    rows_read: int = field(default=0, compare=False)
    checkpoint_seq: int | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


def verify_entries(entries: Iterable[AuditEntry]) -> ChainReport:
    prev_hash, expected_seq, length = GENESIS, 1, 0
    for e in entries:
        if e.seq != expected_seq:
            return ChainReport(length, prev_hash, expected_seq, f"entry {expected_seq} is missing")
        if e.prev_hash != prev_hash:
            return ChainReport(length, prev_hash, e.seq, "prev_hash does not match the entry before")
        if entry_hash(e) != e.hash:
            return ChainReport(length, prev_hash, e.seq, "content does not match its hash")
        prev_hash, expected_seq, length = e.hash, expected_seq + 1, length + 1
    return ChainReport(length, prev_hash)


# The fields `entry_hash` covers, in its order; verification reads only these and `hash`.
_HASHED = ("seq", "at", "actor", "role", "action", "entity_type", "entity_id", "record",
           "before", "after", "reason", "correlation_id", "prev_hash")
# `canonical_json` with its encoder built once (json.dumps builds one per call): same bytes.
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=_json_default).encode
# `canonical_json(body)` of `entry_hash` written out for rows whose texts are str or None:
# keys in sorted order, each text quoted exactly as json.dumps(ensure_ascii=False) quotes
# it. A third of the cost of building and encoding a dict; other rows take `_encode`.
_BODY = ('{"action":%s,"actor":%s,"after":%s,"at":%s,"before":%s,"correlation_id":%s,'
         '"entity_id":%s,"entity_type":%s,"prev_hash":%s,"reason":%s,"record":%s,"role":%s,'
         '"seq":%d}')


def _body_json(row: tuple[Any, ...], at: str) -> str:
    seq, _, actor, role, action, etype, eid, record, before, after, reason, cid, prev = row[:13]
    if type(seq) is not int:
        raise TypeError("seq is not an int")
    q = json.encoder.encode_basestring  # TypeError for anything but str
    return _BODY % (q(action), q(actor), "null" if after is None else q(after), q(at),
                    "null" if before is None else q(before), "null" if cid is None else q(cid),
                    q(eid), q(etype), q(prev), "null" if reason is None else q(reason),
                    "null" if record is None else q(record), q(role), seq)


def verify_rows(rows: Iterable[tuple[Any, ...]]) -> ChainReport:
    """`verify_entries` over plain rows of the `_HASHED` columns and `hash`, in seq order.

    The same checks and hash as `entry_hash`, without building an ORM object per entry.
    """
    prev_hash, expected_seq, length = GENESIS, 1, 0
    sha256, utc_iso, names = hashlib.sha256, _utc_iso, _HASHED
    for row in rows:
        seq, at, prev, stored = row[0], utc_iso(row[1]), row[12], row[13]
        if seq != expected_seq:
            return ChainReport(length, prev_hash, expected_seq, f"entry {expected_seq} is missing")
        if prev != prev_hash:
            return ChainReport(length, prev_hash, seq, "prev_hash does not match the entry before")
        try:
            text = _body_json(row, at)
        except TypeError:
            body = dict(zip(names, row, strict=False))  # `hash`, the 14th, is left out
            body["at"] = at
            text = _encode(body)
        if sha256(text.encode()).hexdigest() != stored:
            return ChainReport(length, prev_hash, seq, "content does not match its hash")
        prev_hash, expected_seq, length = stored, expected_seq + 1, length + 1
    return ChainReport(length, prev_hash)


class AuditCheckpoint(SQLModel, table=True):
    """A verified (seq, hash) of the chain, signed with a key only the service holds.

    A later verification re-hashes only the entries after the newest checkpoint whose
    signature holds, once it has checked that entry `seq` still carries `hash` (rewriting
    the chain before it changes that hash). A checkpoint needs no protection of its own
    beyond the signature: a deleted one costs a longer verification, a forged one is refused.
    """

    __tablename__ = "audit_checkpoint"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    hash: str
    key_id: str
    signature: str
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


CHECKPOINT_INFO = b"tailor/audit-checkpoint/v1"


@dataclass(frozen=True, repr=False)
class CheckpointKey:
    """HMAC-SHA256 key of a service's checkpoints (derive it with `checkpoint_key`)."""

    secret: bytes

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"tailor/audit-checkpoint-id|" + self.secret).hexdigest()[:16]

    def sign(self, seq: int, head_hash: str) -> str:
        return hmac.new(self.secret, f"{seq}:{head_hash}".encode(), hashlib.sha256).hexdigest()

    def holds(self, seq: int, head_hash: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(seq, head_hash), signature)

    def __repr__(self) -> str:
        return f"CheckpointKey(key_id={self.key_id})"


def checkpoint_key(material: bytes) -> CheckpointKey:
    """A checkpoint key derived (HKDF-SHA256) from secret key material the service already
    holds, so no new secret has to be configured, and the material itself is never used
    for a second purpose."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=CHECKPOINT_INFO).derive(material)
    return CheckpointKey(derived)


def verify(session: Session, *, key: CheckpointKey | None = None, full: bool = False,
           batch: int = 5000) -> ChainReport:
    """Verify the chain. With `key`, start from the newest checkpoint it signed (unless
    `full`: a monitor's whole re-hash) and, when the chain holds, stage a checkpoint at
    the new head in the caller's transaction. A checkpoint under this key whose signature
    does not hold fails the verification: someone wrote to the checkpoint table."""
    start: tuple[int, str] = (0, GENESIS)
    if key is not None and not full:
        table = AuditCheckpoint.__table__  # type: ignore[attr-defined]
        cp = session.execute(select(table.c.seq, table.c.hash, table.c.signature)  # type: ignore[call-overload]
                             .where(table.c.key_id == key.key_id)
                             .order_by(table.c.seq.desc()).limit(1)).first()
        if cp is not None:
            seq, cp_hash, signature = cp
            if not key.holds(seq, cp_hash, signature):
                return ChainReport(0, GENESIS, seq, f"the checkpoint at entry {seq} does not "
                                   "carry this service's signature: forged or altered")
            entries = AuditEntry.__table__  # type: ignore[attr-defined]
            stored = session.execute(select(entries.c.hash)  # type: ignore[call-overload]
                                     .where(entries.c.seq == seq)).scalar()
            if stored != cp_hash:
                return ChainReport(seq - 1, GENESIS, seq, f"entry {seq} is not the one its "
                                   "signed checkpoint recorded: the chain was rewritten",
                                   rows_read=1, checkpoint_seq=seq)
            start = (seq, cp_hash)
    report = _verify_after(session, *start, batch=batch)
    if key is not None and report.ok and report.length > start[0]:
        _stage_checkpoint(session, key, report.length, report.head_hash)
    return report


def _stage_checkpoint(session: Session, key: CheckpointKey, seq: int, head_hash: str) -> None:
    # Two verifications at once may both record the same head: the second is a no-op.
    session.connection().execute(
        text("INSERT INTO audit_checkpoint (seq, hash, key_id, signature, at) "
             "VALUES (:seq, :hash, :key_id, :signature, :at) ON CONFLICT (seq) DO NOTHING"),
        {"seq": seq, "hash": head_hash, "key_id": key.key_id,
         "signature": key.sign(seq, head_hash), "at": _bind_time(session, datetime.now(UTC))})


def _bind_time(session: Session, at: datetime) -> Any:
    return UtcDateTime().process_bind_param(at, session.get_bind().dialect)


def _body_sql(dialect: str) -> str | None:  # None: not a database Tailor runs on
    """`entry_hash`'s canonical JSON built by the database, in the same key order, so the
    verifier fetches one text per entry instead of building it from thirteen columns (the
    bulk of a full verification's cost). A row whose database-built text does not hash to
    its stored hash is re-built in Python (`_stored_entry_hash`) before it is called broken: an
    encoding quirk of the database never passes for tampering, and never hides it."""
    if dialect == "postgresql":
        def quote(column: str) -> str:
            return f"to_json({column})::text"
        at = "'\"'||to_char(at AT TIME ZONE 'UTC','YYYY-MM-DD\"T\"HH24:MI:SS.US')||'+00:00\"'"
        seq = "seq::text"
    elif dialect == "sqlite":
        def quote(column: str) -> str:
            return f"json_quote({column})"
        at = "'\"'||replace(at,' ','T')||'+00:00\"'"  # as SQLAlchemy stores a UTC time
        seq = "seq"
    else:
        return None
    nullable = {"after", "before", "correlation_id", "reason", "record"}
    parts = {name: (f"coalesce({quote(name)},'null')" if name in nullable else quote(name))
             for name in _HASHED if name not in ("at", "seq")}
    parts.update(at=at, seq=seq)
    return "'{'||" + "||','||".join(f"'\"{name}\":'||{parts[name]}"
                                    for name in sorted(parts)) + "||'}'"


def _stored_entry_hash(session: Session, seq: int) -> str | None:
    """`entry_hash` of entry `seq` as Python builds it (None: no such entry)."""
    table = AuditEntry.__table__  # type: ignore[attr-defined]
    row = session.execute(select(*(table.c[name] for name in _HASHED))  # type: ignore[call-overload]
                          .where(table.c.seq == seq)).first()
    if row is None:
        return None
    at = _utc_iso(row[1])
    try:
        body = _body_json(tuple(row), at)
    except TypeError:
        fields = dict(zip(_HASHED, row, strict=True))
        fields["at"] = at
        body = _encode(fields)
    return hashlib.sha256(body.encode()).hexdigest()


def _verify_after(session: Session, seq0: int, hash0: str, *, batch: int) -> ChainReport:
    """Re-hash the entries after `seq0` (whose hash is `hash0`), streamed `batch` rows at
    a time, checking order, links and hashes as `verify_rows` does."""
    dialect = session.get_bind().dialect.name
    body = _body_sql(dialect)
    if body is None:
        raise NotImplementedError(f"audit verification on {dialect}")
    prev_hash, expected, read = hash0, seq0 + 1, 0
    result = session.connection().exec_driver_sql(
        f"SELECT seq, prev_hash, hash, {body} FROM audit_entry WHERE seq > {int(seq0)} "
        "ORDER BY seq", execution_options={"stream_results": True, "yield_per": batch})
    sha256, checkpoint = hashlib.sha256, seq0 or None
    try:
        for partition in result.partitions():
            for seq, prev, stored, text_ in partition:
                read += 1
                if seq != expected:
                    return ChainReport(expected - 1, prev_hash, expected,
                                       f"entry {expected} is missing", read, checkpoint)
                if prev != prev_hash:
                    return ChainReport(expected - 1, prev_hash, seq, "prev_hash does not "
                                       "match the entry before", read, checkpoint)
                if (text_ is None or sha256(text_.encode()).hexdigest() != stored) \
                        and _stored_entry_hash(session, seq) != stored:
                    return ChainReport(expected - 1, prev_hash, seq,
                                       "content does not match its hash", read, checkpoint)
                prev_hash, expected = stored, expected + 1
    finally:
        result.close()  # a server-side cursor left open on an early verdict
    return ChainReport(expected - 1, prev_hash, rows_read=read, checkpoint_seq=checkpoint)


def count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(AuditEntry)).one()
