"""List use cases (statistician, monitor): generate, import, seal, extend, commitment, unseal.

A list is encrypted at rest from the moment it exists (status `generated`); sealing
publishes its commitment to the audit chain and makes it the one list that allocates.
The seed is kept sealed with the list key: extensions continue its streams (a longer first
generation would have had the same blocks) and the unsealed list shows it, so anyone can
regenerate the list at closure. An imported list gets a fresh seed for its extensions.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from services.core import audit
from services.core.errors import Conflict, Forbidden, InvalidInput, NotFound

from . import groups, parking, repository, stages
from .domain import (
    BatchCommitment,
    CommitmentError,
    ListCommitment,
    ListDesign,
    ListImportError,
    OpenedSlot,
    RandomizationError,
    SealedSlot,
    SealError,
    Slot,
    extend_stratum,
    generate_list,
    new_seed,
    parse_list_csv,
    seal_batch,
    unseal_slot,
    verify_list,
)
from .domain.minimization import replay
from .models import ListCommitmentRow, ListSource, ListStatus, NamedCounter, RandomizationList
from .service import (
    SEED,
    Actor,
    Context,
    InvalidList,
    decision_counter,
    design_from_snapshot,
    design_snapshot,
    disclose,
    invalid,
)

MINIMIZATION_SEED_TAG = b"tailor.minimization-seed/1\x00"


def _lock(session: Session, list_id: str) -> RandomizationList:
    lst = repository.lock_list(session, list_id)
    if lst is None:
        raise NotFound(f"no randomization list {list_id}", field="list_id")
    return lst


def generate(session: Session, ctx: Context, *, slots_per_stratum: int | None,
             actor: Actor) -> RandomizationList:
    """A new list from the protocol's design and a fresh CSPRNG seed."""
    snapshot = design_snapshot(ctx.protocol)
    seed = new_seed()
    try:
        design = design_from_snapshot(snapshot)  # refuses a design this version cannot run
        slots = generate_list(design, seed, slots_per_stratum)
    except RandomizationError as err:
        raise invalid(err) from None
    return _store(session, ctx, snapshot, design, slots, seed, ListSource.GENERATED, actor)


def import_csv(session: Session, ctx: Context, *, text: str, actor: Actor) -> RandomizationList:
    """A list made elsewhere; a defective one raises InvalidList, naming every problem."""
    snapshot = design_snapshot(ctx.protocol)
    try:
        design = design_from_snapshot(snapshot)
    except RandomizationError as err:
        raise invalid(err) from None
    if design.stages:
        raise InvalidInput("a multi-stage (SMART) list is generated here, not imported: its "
                           "stage strata have their own options and block lengths", field="body")
    try:
        slots = parse_list_csv(text, design)
    except ListImportError as err:
        raise InvalidList(err) from None
    return _store(session, ctx, snapshot, design, slots, new_seed(), ListSource.IMPORTED, actor)


def _store(session: Session, ctx: Context, snapshot: dict, design: ListDesign, slots: list[Slot],
           seed: bytes, source: ListSource, actor: Actor) -> RandomizationList:
    list_id = uuid.uuid4().hex
    sealed = seal_batch(slots, key=ctx.key.material, list_id=list_id, batch=1)
    now = datetime.now(UTC)
    lst = RandomizationList(
        id=list_id, status=ListStatus.GENERATED, source=source, design=json.dumps(snapshot),
        key_id=ctx.key.key_id, seed_sealed=ctx.key.seal(SEED, (list_id,), seed),
        created_by=actor.name, created_role=actor.role, created_at=now)
    session.add(lst)
    session.flush()
    refs = {key: ctx.key.stratum_ref(list_id, key) for key in design.stratum_keys}
    repository.add_slots(session, list_id, refs, sealed.slots, batch=1)
    last: dict[str, int] = {}
    for s in slots:
        last[s.stratum] = max(last.get(s.stratum, 0), s.seq)
    for key, ref in refs.items():
        repository.add_counter(session, list_id, ref, last.get(key, 0))
    if design.minimization is not None:  # exists before any decision: always row-locked
        session.add(NamedCounter(name=decision_counter(list_id), value=0))
    if design.stages:  # each stage's numbers run over the trial, like the first stage's
        stages.ensure_counters(session, ctx)
    _add_commitment(session, sealed.commitment, actor, now)
    audit.append(session, actor=actor.name, role=actor.role, action=f"list.{source.value}",
                 entity_type="list", entity_id=list_id,
                 after={"list_id": list_id, "source": source.value, "slots": len(slots),
                        "strata": len(design.strata), "key_id": ctx.key.key_id,
                        **_seed_commitment(design, seed)})
    return lst


def _seed_commitment(design: ListDesign, seed: bytes) -> dict[str, str]:
    """Minimization's sealed element is its seed: its SHA-256 (with a domain tag; the seed is
    256 random bits, so the hash hides it) is published when the list is made and sealed,
    and the unsealed seed must match it."""
    if design.minimization is None:
        return {}
    return {"seed_commitment": seed_commitment(seed)}


def seed_commitment(seed: bytes) -> str:
    return hashlib.sha256(MINIMIZATION_SEED_TAG + seed).hexdigest()


def _add_commitment(session: Session, batch: BatchCommitment, actor: Actor, at: datetime) -> None:
    session.add(ListCommitmentRow(list_id=batch.list_id, batch=batch.batch, root=batch.root.hex(),
                                  statement=json.dumps(batch.statement()), created_by=actor.name,
                                  created_at=at))


def commitment_of(session: Session, list_id: str) -> ListCommitment:
    made = ListCommitment(list_id)
    for row in repository.commitments(session, list_id):
        made = made.extended(BatchCommitment.from_statement(json.loads(row.statement)))
    return made


def published_commitment(session: Session, list_id: str) -> ListCommitment:
    """The public statement; only once the list is sealed (before, it is a draft)."""
    lst = repository.get_list(session, list_id)
    if lst is None:
        raise NotFound(f"no randomization list {list_id}", field="list_id")
    if lst.status == ListStatus.GENERATED:
        raise Conflict(f"list {list_id} is not sealed yet: it has no published commitment",
                       field="list_id")
    return commitment_of(session, list_id)


def seal(session: Session, ctx: Context, *, list_id: str, actor: Actor) -> ListCommitment:
    """Publish the commitment in the audit chain; the list becomes the one that allocates."""
    lst = _lock(session, list_id)
    if lst.status != ListStatus.GENERATED:
        raise Conflict(f"list {list_id} is {lst.status}; only a generated list can be sealed",
                       field="list_id")
    ctx.check_key(lst)
    active = repository.active_list(session)
    if active is not None:
        raise Conflict(f"list {active.id} is sealed and allocating; one list allocates at "
                       "a time", field="list_id")
    commitment = commitment_of(session, list_id)
    lst.status, lst.sealed_by, lst.sealed_at = ListStatus.SEALED, actor.name, datetime.now(UTC)
    session.add(lst)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("another list was sealed at the same moment", field="list_id") from None
    design = ctx.design_of(lst)
    seed = ctx.key.open(SEED, (list_id,), lst.seed_sealed) if design.minimization else b""
    audit.append(session, actor=actor.name, role=actor.role, action="list.sealed",
                 entity_type="list", entity_id=list_id,
                 after={**_commitment_audit(commitment), **_seed_commitment(design, seed)})
    parking.redrive(session, ctx)  # participants who waited for a list are allocated now
    stages.redrive(session, ctx)  # and stage decisions that waited for one
    return commitment


def _commitment_audit(commitment: ListCommitment) -> dict:
    return {"list_id": commitment.list_id, "commitment_digest": commitment.digest(),
            "batches": [{"batch": b.batch, "root": b.root.hex(), "size": b.size}
                        for b in commitment.batches]}


def extend(session: Session, ctx: Context, *, list_id: str, stratum: str, slots: int,
           actor: Actor) -> ListCommitment:
    """Append sealed whole blocks to one stratum as a new batch with a new commitment."""
    lst = _lock(session, list_id)
    if lst.status != ListStatus.SEALED:
        raise Conflict(f"list {list_id} is {lst.status}; only the sealed list is extended",
                       field="list_id")
    ctx.check_key(lst)
    design = ctx.design_of(lst)
    if stratum not in design.stratum_keys:
        raise invalid(RandomizationError(f"{stratum!r} is not a stratum of list {list_id}",
                                         field="stratum"))
    counter = repository.lock_counter(session, list_id, ctx.key.stratum_ref(list_id, stratum))
    if counter is None:  # made with the list, one per stratum: the database was altered
        raise Conflict(f"list {list_id} has no counter for stratum {stratum}", field="stratum")
    after = _open_slot(session, ctx, lst, stratum, counter.last_seq).slot if counter.last_seq else None
    seed = ctx.key.open(SEED, (list_id,), lst.seed_sealed)
    try:
        new = extend_stratum(design, stratum, seed, after=after, min_new_slots=slots)
        current = commitment_of(session, list_id)
        sealed = seal_batch(new, key=ctx.key.material, list_id=list_id, batch=current.next_batch)
        commitment = current.extended(sealed.commitment)
    except RandomizationError as err:
        raise invalid(err) from None
    repository.add_slots(session, list_id, {stratum: counter.stratum_ref}, sealed.slots,
                         batch=sealed.commitment.batch)
    counter.last_seq, counter.low_alarm = new[-1].seq, False
    session.add(counter)
    _add_commitment(session, sealed.commitment, actor, datetime.now(UTC))
    # The stratum is named in the public commitment's ranges, not here beside a record.
    audit.append(session, actor=actor.name, role=actor.role, action="list.extended",
                 entity_type="list", entity_id=list_id,
                 after={**_commitment_audit(commitment), "slots_added": len(new)})
    parking.redrive(session, ctx)  # participants who waited for a slot are allocated now
    stages.redrive(session, ctx)
    return commitment


def _open_slot(session: Session, ctx: Context, lst: RandomizationList, stratum: str,
               seq: int) -> OpenedSlot:
    row = repository.slot(session, lst.id, ctx.key.stratum_ref(lst.id, stratum), seq)
    if row is None:
        raise Conflict(f"list {lst.id} misses slot {seq} of a stratum", field="list_id")
    try:
        return unseal_slot(SealedSlot(stratum, row.seq, row.nonce, row.ciphertext, row.leaf),
                           key=ctx.key.material, list_id=lst.id)
    except SealError as err:
        raise Conflict(str(err), field="list_id") from None


# ── closing allocation, then unsealing: the study manager, then two roles together ──


def close(session: Session, *, list_id: str, reason: str, actor: Actor) -> RandomizationList:
    """The study manager closes allocation on the sealed list (no more participants); only
    then may it be unsealed. Recorded with who, when and why."""
    if not reason.strip():
        raise InvalidInput("a reason is required to close allocation", field="reason")
    lst = _lock(session, list_id)
    if lst.status != ListStatus.SEALED:
        raise Conflict(f"list {list_id} is {lst.status}; only the sealed list that allocates "
                       "can be closed", field="list_id")
    now = datetime.now(UTC)
    lst.status, lst.closed_by, lst.closed_at, lst.close_reason = (
        ListStatus.CLOSED, actor.name, now, reason)
    session.add(lst)
    audit.append(session, actor=actor.name, role=actor.role, action="list.allocation_closed",
                 entity_type="list", entity_id=list_id, reason=reason,
                 after={"status": ListStatus.CLOSED.value, "closed_at": now.isoformat()})
    return lst


@dataclass(frozen=True)
class UnsealPending:
    list_id: str
    requested_by: str
    requested_role: str
    awaiting_roles: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True)
class UnsealedSlot:
    slot: Slot
    salt: bytes
    batch: int
    used: bool


@dataclass(frozen=True)
class UnsealedList:
    list_id: str
    source: str
    seed: bytes
    commitment: ListCommitment
    slots: list[UnsealedSlot]
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return not self.problems


def unseal(session: Session, ctx: Context, *, list_id: str, actor: Actor, reason: str,
           together: Sequence[str]) -> UnsealPending | UnsealedList:
    """After closure: one of the `together` roles requests, another role (another person)
    confirms, each with a reason. The opened list is for the unblinded roles to read
    (`read_unsealed`); the two persons get whether it matches its commitment."""
    if not reason.strip():
        raise InvalidInput("a reason is required to unseal a list", field="reason")
    lst = _lock(session, list_id)
    if lst.status == ListStatus.SEALED:
        raise Conflict(f"list {list_id} still allocates: the study manager must close "
                       "allocation before it can be unsealed", field="list_id")
    if lst.status != ListStatus.CLOSED:
        raise Conflict(f"list {list_id} is {lst.status}; only a list closed for allocation "
                       "is unsealed", field="list_id")
    now = datetime.now(UTC)
    valid = timedelta(hours=ctx.protocol.randomization.unseal_request_valid_hours)
    pending = lst.unseal_requested_at is not None and now - lst.unseal_requested_at < valid
    if not pending:
        lst.unseal_requested_by, lst.unseal_requested_role = actor.name, actor.role
        lst.unseal_requested_at, lst.unseal_request_reason = now, reason
        session.add(lst)
        audit.append(session, actor=actor.name, role=actor.role, action="list.unseal_requested",
                     entity_type="list", entity_id=list_id, reason=reason)
        return UnsealPending(list_id, actor.name, actor.role,
                             tuple(r for r in together if r != actor.role), now + valid)
    if actor.role == lst.unseal_requested_role or actor.name == lst.unseal_requested_by:
        raise Forbidden(f"unsealing needs a second person in another role "
                        f"({', '.join(r for r in together if r != lst.unseal_requested_role)}); "
                        f"{lst.unseal_requested_role} {lst.unseal_requested_by} asked already",
                        field="role")
    opened = _open_all(session, ctx, lst)
    lst.status, lst.unsealed_at = ListStatus.UNSEALED, now
    lst.unsealed_by = f"{lst.unseal_requested_by}+{actor.name}"
    lst.unseal_confirm_reason = reason
    session.add(lst)
    audit.append(session, actor=actor.name, role=actor.role, action="list.unsealed",
                 entity_type="list", entity_id=list_id, reason=reason,
                 after={"requested_by": lst.unseal_requested_by,
                        "requested_role": lst.unseal_requested_role,
                        "request_reason": lst.unseal_request_reason,
                        "commitment_digest": opened.commitment.digest(),
                        "verified": opened.verified, "problems": len(opened.problems)})
    return opened


def read_unsealed(session: Session, ctx: Context, *, list_id: str,
                  actor: Actor) -> UnsealedList:
    """The unsealed list (seed, every slot with its arm): unblinded roles only; audited."""
    lst = repository.get_list(session, list_id)
    if lst is None:
        raise NotFound(f"no randomization list {list_id}", field="list_id")
    if lst.status != ListStatus.UNSEALED:
        raise Conflict(f"list {list_id} is {lst.status}, not unsealed", field="list_id")
    audit.append(session, actor=actor.name, role=actor.role, action="list.unsealed_read",
                 entity_type="list", entity_id=list_id)
    return _open_all(session, ctx, lst)


def _open_all(session: Session, ctx: Context, lst: RandomizationList) -> UnsealedList:
    design = ctx.design_of(lst)
    stratum_by_ref = {ctx.key.stratum_ref(lst.id, k): k for k in design.stratum_keys}
    commitment = commitment_of(session, lst.id)
    problems: list[str] = []
    slots: list[UnsealedSlot] = []
    for row in repository.slots_of(session, lst.id):
        stratum = stratum_by_ref.get(row.stratum_ref)
        if stratum is None:
            problems.append(f"a slot row has an unknown stratum reference {row.stratum_ref}")
            continue
        try:
            o = unseal_slot(SealedSlot(stratum, row.seq, row.nonce, row.ciphertext, row.leaf),
                            key=ctx.key.material, list_id=lst.id)
        except SealError as err:
            problems.append(str(err))
            continue
        slots.append(UnsealedSlot(o.slot, o.salt, row.batch, row.used_by is not None))
    slots.sort(key=lambda s: (s.slot.stratum, s.slot.seq))
    try:
        verify_list([OpenedSlot(s.slot, s.salt) for s in slots], commitment)
    except CommitmentError as err:
        problems.extend(err.problems or (str(err),))
    seed = ctx.key.open(SEED, (lst.id,), lst.seed_sealed)
    if design.minimization is not None:
        problems.extend(_replay_problems(session, ctx, lst, design, seed))
    if design.group is not None:
        used = {(r.stratum_ref, r.seq): r.used_by for r in repository.slots_of(session, lst.id)}
        problems.extend(groups.verify_groups(session, ctx, lst, {
            (s.slot.stratum, s.slot.seq): (s.slot.arm, used.get(
                (ctx.key.stratum_ref(lst.id, s.slot.stratum), s.slot.seq))) for s in slots}))
    return UnsealedList(lst.id, lst.source, seed, commitment, slots, tuple(problems))


def _replay_problems(session: Session, ctx: Context, lst: RandomizationList, design: ListDesign,
                     seed: bytes) -> list[str]:
    """Every minimization decision recomputed from the seed and the earlier participants'
    levels must give the arm (and the scores) that were recorded."""
    m = design.minimization
    if m is None:
        return []
    done = sorted(((d.seq or 0, r.record, d) for r in repository.allocations(session)
                   if r.list_id == lst.id and not r.pilot for d in [disclose(ctx, r)]),
                  key=lambda t: t[0])
    problems = []
    if [n for n, _, _ in done] != list(range(1, len(done) + 1)):
        problems.append("minimization decisions are not numbered 1..n without gaps")
    try:
        replayed = replay(m, seed, [d.levels or {} for _, _, d in done])
    except RandomizationError as err:
        return [*problems, f"minimization replay failed: {err}"]
    for (n, record, d), again in zip(done, replayed, strict=True):
        if again.arm != d.arm or (d.decision or {}).get("scores") != again.scores:
            problems.append(f"decision {n} (record {record}) does not replay from the seed")
    return problems
