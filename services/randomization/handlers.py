"""Bus consumers (`cluster_assigned` → allocation; for a design without a prediction step,
a complete baseline → allocation) and the free-slot watcher (metrics, alarm).

The cluster arrives sealed to this service's bus key; payloads published before sealing
(an upgrade with messages still in the stream) carry it in clear and are read as well.

Metrics never carry a stratum label, nor a value that moves with one stratum (a stratum is
a cluster): the free-slot gauge shows the total over all strata; the running-low gauge
counts the strata flagged by the last batched check (see reports.raise_low_alarms).
"""

from __future__ import annotations

from functools import partial

import structlog
from prometheus_client import Gauge
from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer
from services.core.db import unit_of_work
from services.core.errors import InvalidInput, TransientError
from services.core.events import (
    ClusterAssigned,
    Envelope,
    FormSaved,
    FormSavedForRandomization,
    SealedCluster,
)
from services.core.periodic import every
from services.core.sealed_events import open_form_saved, validated
from services.core.sealing import Keyring

from . import baseline_saves, groups, parking, reports, service, stages
from .bootstrap import RandomizationDeps
from .domain import RandomizationError
from .domain.baseline import is_baseline, levels_of, unmet
from .domain.group import GroupDesign, group_id_of
from .service import Actor, AllocationRequest

log = structlog.get_logger(__name__)

CLUSTER_ASSIGNED = Subscription("randomization-cluster-assigned", (ClusterAssigned.subject,))
# Designs without a prediction step allocate from the baseline save itself.
FORM_SAVED = Subscription("randomization-form-saved", (FormSavedForRandomization.subject,))
SUBSCRIPTIONS = (CLUSTER_ASSIGNED, FORM_SAVED)
DURABLE = CLUSTER_ASSIGNED.durable
WATCH_SECONDS = 2.0

FREE_SLOTS = Gauge(
    "tailor_randomization_free_slots",
    "Free slots of the allocating list, `total` over all strata (nothing per stratum: a "
    "stratum is a cluster)", ["service", "statistic"])
STRATA_RUNNING_LOW = Gauge(
    "tailor_randomization_strata_running_low",
    "Strata of the allocating list below the protocol's threshold at the last batched check",
    ["service"])


def _cluster(env: Envelope, keyring: Keyring) -> tuple[ClusterAssigned, str]:
    """The event and its cluster; errors name fields only, never a value (the cluster)."""
    data = dict(env.data)
    legacy = "sealed" not in data and "cluster" in data
    if legacy:
        clear = validated(SealedCluster, {k: data.pop(k, None) for k in
                                          ("cluster", "probabilities")},
                          what="cluster_assigned payload")
        data["sealed"] = ""
    event = validated(ClusterAssigned, data, what="cluster_assigned payload")
    if not legacy:
        clear = validated(SealedCluster, keyring.open_json(
            event.sealed, subject=ClusterAssigned.subject, record=event.record),
            what="sealed cluster")
    return event, clear.cluster


def consumers(deps: RandomizationDeps) -> list[Consumer]:
    def on_cluster_assigned(session: Session, env: Envelope) -> None:
        event, cluster = _cluster(env, deps.bus_keyring)
        request = AllocationRequest(
            record=event.record, cluster=cluster, site=event.site, pilot=event.pilot,
            source="event", actor=Actor(f"event:{env.producer}", "system"),
            correlation_id=env.correlation_id or env.id, model_version=event.model_version,
            low_confidence=event.low_confidence)
        ctx = deps.context
        try:
            with session.begin_nested():  # a refused attempt leaves nothing behind
                service.allocate(session, ctx, request)
        except parking.WAITING as err:  # no list yet, stratum empty: wait in the database
            parking.park(session, ctx, request, err)
        except service.AllocationRace as err:  # the concurrent winner's row: ask again
            raise TransientError(err.detail) from None

    def on_form_saved(session: Session, env: Envelope) -> None:
        saved = open_form_saved(env, deps.bus_keyring)  # a broken or foreign payload is poison
        ctx = deps.context
        protocol = ctx.protocol
        if protocol.randomization.personalized:
            return  # the cluster comes from the allocation service
        trigger = baseline_saves.Trigger(env.id, env.correlation_id or env.id)
        withdrawn = baseline_saves.note_withdrawal(session, saved, trigger, protocol)
        if protocol.randomization.stages and not _stage_save(
                session, ctx, saved, Actor(f"event:{env.producer}", "system"),
                trigger.correlation_id):
            return  # a save outside the baseline event is the stages' alone
        actor = Actor(f"event:{env.producer}", "system")
        if protocol.randomization.group is not None and withdrawn:
            groups.withdraw(session, ctx, record=saved.record, actor=actor,
                            correlation_id=trigger.correlation_id)
            return  # a member who withdraws before the close leaves the group
        if not is_baseline(protocol, saved.event) or withdrawn or unmet(protocol, saved.fields):
            return  # a later event's withdrawal form, withdrawn, or not ready yet
        try:
            levels = levels_of(protocol, saved.fields)
        except RandomizationError as err:  # staff correct it in REDCap; the next save allocates
            baseline_saves.request_review(session, record=saved.record,
                                          field=err.field or "stratify_by", protocol=protocol,
                                          trigger=trigger)
            return
        group = protocol.randomization.group
        if group is not None:  # group randomization: join the group; its close allocates
            _join_group(session, deps, env, saved.record, saved.fields, levels, actor,
                        GroupDesign(group.group_field, group.min_group_size,
                                    group.max_group_size))
            return
        request = AllocationRequest(
            record=saved.record, cluster=None, site=levels.get("site"), pilot=False,
            source="event", actor=actor,
            correlation_id=trigger.correlation_id, levels=levels)
        try:
            with session.begin_nested():
                service.allocate(session, ctx, request)
        except parking.WAITING as err:
            parking.park(session, ctx, request, err)
        except service.AllocationRace as err:
            raise TransientError(err.detail) from None

    return [Consumer.on(CLUSTER_ASSIGNED, on_cluster_assigned),
            Consumer.on(FORM_SAVED, on_form_saved)]


def _stage_save(session: Session, ctx: service.Context, saved: FormSaved, actor: Actor,
                correlation_id: str) -> bool:
    """What a save means for the later stages; True when it is a baseline save (the
    first stage then reads it too)."""
    protocol = ctx.protocol
    r, f = protocol.redcap, protocol.redcap.fields
    if f.withdrawn in saved.fields:
        stages.record_withdrawal(session, record=saved.record, actor=actor,
                                 withdrawn=(saved.fields.get(f.withdrawn) or "").strip() == "1",
                                 correlation_id=correlation_id)
    event = r.event_key(saved.event)
    if event == r.baseline_event:
        values = {s.rule.baseline_field: saved.fields[s.rule.baseline_field]
                  for s in protocol.randomization.stages if s.rule.baseline_field in saved.fields}
        if values:
            stages.record_baseline(session, record=saved.record, values=values, actor=actor,
                                   correlation_id=correlation_id)
        return True
    for stage in protocol.randomization.stages:
        tp = protocol.timepoint_by_key[stage.timepoint]
        if tp.redcap_event != event:
            continue
        if any((saved.fields.get(f"{form}_complete") or "").strip() != "2" for form in tp.forms):
            continue  # the stage's forms are not complete yet
        request = stages.StageRequest(record=saved.record, stage=stage.key,
                                      value=saved.fields.get(stage.rule.field), source="event",
                                      actor=actor, correlation_id=correlation_id)
        try:
            with session.begin_nested():
                stages.reach_stage(session, ctx, request)
        except service.AllocationRace as err:
            raise TransientError(err.detail) from None
        except stages.WAITING as err:  # no list, stage stratum empty: wait in the database
            stages.park(session, ctx, request, err)
    return False


def _join_group(session: Session, deps: RandomizationDeps, env: Envelope, record: str,
                fields: dict[str, str], levels: dict[str, str], actor: Actor,
                design: GroupDesign) -> None:
    try:
        group_id = group_id_of(design, fields)
    except RandomizationError as err:  # names the REDCap field, never its value
        raise InvalidInput(f"{err.field}: missing, or not a group id", field=err.field) from None
    try:
        with session.begin_nested():
            groups.join(session, deps.context, record=record, group_id=group_id, levels=levels,
                        actor=actor, correlation_id=env.correlation_id or env.id)
    except groups.GroupRace as err:  # the concurrent founder's or duplicate's row: ask again
        raise TransientError(err.detail) from None


def check_slots(deps: RandomizationDeps) -> None:
    """Raise the low-slot alarm where due (own transaction) and refresh the gauges."""
    kernel, ctx = deps.kernel, deps.context
    with unit_of_work(kernel.engine) as session:
        if parking.redrive(session, ctx) + stages.redrive(session, ctx):
            kernel.relay.wake()
    with unit_of_work(kernel.engine) as session:
        alarm = reports.raise_low_alarms(session, ctx)
        free = reports.free_slots(session, ctx)
    if alarm is not None:
        kernel.relay.wake()
        log.warning("randomization.stratum_running_low", list_id=alarm.list_id,
                    strata_running_low=alarm.strata_running_low,
                    fewest_free_slots=alarm.fewest_free_slots)
    FREE_SLOTS.labels(kernel.name, "total").set(free.free if free else 0)
    STRATA_RUNNING_LOW.labels(kernel.name).set(len(free.running_low) if free else 0)


async def watch_free_slots(deps: RandomizationDeps) -> None:
    await every("randomization.slot_check", WATCH_SECONDS, partial(check_slots, deps),
                stop=deps.kernel.stop)
