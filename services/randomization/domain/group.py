"""Group (cluster) randomization: pre-formed groups are randomized as units (pure rules).

A participant whose baseline is complete joins the group named by the protocol's
`group_field`; the group's stratum is its first member's (a group forms at one site), and a
member whose levels put them elsewhere is held for review rather than moved. When staff
close a group, the group takes the next slot of its stratum in the sealed list (the list's
slots are group slots: permuted blocks of groups) and every member inherits that slot's
arm. Whoever joins a group after it was closed is not allocated by themselves: they are
held for review (the study manager may admit them to the group's arm, with a reason), so a
late joiner never silently enters an arm nor gets a second draw.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .errors import RandomizationError

# A group id becomes part of URLs and of the slot's used-by tag: keep it plain.
GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SLOT_TAG_PREFIX = "group:"  # a slot's user is the group, never one of its members


class GroupError(RandomizationError):
    """A group id, size or state that does not allow what was asked."""


class UnknownGroup(GroupError):
    """No member of this group has completed the baseline."""


class GroupClosed(GroupError):
    """The group was randomized already."""


class GroupTooSmall(GroupError):
    """Fewer members than the protocol's min_group_size."""


@dataclass(frozen=True)
class GroupDesign:
    group_field: str
    min_group_size: int
    max_group_size: int | None


class GroupStatus(StrEnum):
    OPEN = "open"  # members join
    CLOSED = "closed"  # randomized: its members are allocated to its arm


class MemberStatus(StrEnum):
    MEMBER = "member"  # joined while the group was open; allocated when it closes
    ALLOCATED = "allocated"  # holds the group's arm
    REVIEW = "review"  # joined late (group closed or full) or from another stratum
    WITHDRAWN = "withdrawn"  # withdrew before the close: not allocated with the group


class JoinOutcome(StrEnum):
    JOINED = "joined"
    ALREADY = "already"  # redelivered save: the record is a member (or under review) already
    LATE = "late"  # the group was closed
    FULL = "full"  # the group has max_group_size members
    OTHER_STRATUM = "other_stratum"  # the member's levels are not the group's stratum


def group_id_of(design: GroupDesign, fields: Mapping[str, str]) -> str:
    """The participant's group from their baseline row; GroupError names the field."""
    value = (fields.get(design.group_field) or "").strip()
    if not value:
        raise GroupError(f"{design.group_field}: no group", field=design.group_field)
    check_group_id(value, field=design.group_field)
    return value


def check_group_id(value: str, *, field: str = "group_id") -> str:
    if not GROUP_ID.match(value):
        raise GroupError(f"{field}: a group id is 1-64 letters, digits, '_', '.' or '-' "
                         "(starting with a letter or digit)", field=field)
    return value


def join_outcome(*, already_member: bool, status: GroupStatus | None, members: int,
                 group_stratum: str | None, member_stratum: str,
                 design: GroupDesign) -> JoinOutcome:
    """What a participant's complete baseline does to their group (None status: no group
    yet, this participant founds it)."""
    if already_member:
        return JoinOutcome.ALREADY
    if status is None:
        return JoinOutcome.JOINED
    if status is GroupStatus.CLOSED:
        return JoinOutcome.LATE
    if group_stratum is not None and group_stratum != member_stratum:
        return JoinOutcome.OTHER_STRATUM
    if design.max_group_size is not None and members >= design.max_group_size:
        return JoinOutcome.FULL
    return JoinOutcome.JOINED


def check_closable(group_id: str, *, status: GroupStatus | None, members: int,
                   design: GroupDesign) -> None:
    """Raise GroupError unless the group can be closed (randomized) now."""
    if status is None:
        raise UnknownGroup(f"no group {group_id}: none of its members has completed the "
                         "baseline", field="group_id")
    if status is GroupStatus.CLOSED:
        raise GroupClosed(f"group {group_id} is closed already", field="group_id")
    if members < design.min_group_size:
        raise GroupTooSmall(f"group {group_id} has {members} member(s); the protocol needs at "
                         f"least {design.min_group_size} to randomize it", field="group_id")


def slot_user(group_id: str) -> str:
    """What marks a slot as used: the group (hashed with the list key before storing)."""
    return f"{SLOT_TAG_PREFIX}{group_id}"
