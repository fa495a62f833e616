"""Group randomization's rules: a group design is permuted blocks over group slots, groups
stay balanced per stratum, joins and closes are decided as the protocol says, and the next
group's arm is as guessable as blocks' theory says (and no more). That every member
inherits the group's arm is the service's to keep: tests/integration/randomization/test_groups.py."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.randomization.domain import design_from_protocol, generate_list
from services.randomization.domain.group import (
    GroupClosed,
    GroupDesign,
    GroupError,
    GroupStatus,
    GroupTooSmall,
    JoinOutcome,
    UnknownGroup,
    check_closable,
    group_id_of,
    join_outcome,
)
from services.randomization.domain.predictability import (
    convergence_guess,
    convergence_theory,
    guess_rate,
)
from services.randomization.domain.stream import new_seed
from tests.support.designs import group_trial, plain_trial

GD = GroupDesign("grp_id", min_group_size=2, max_group_size=3)


def test_a_group_design_is_permuted_blocks_of_group_slots_per_stratum() -> None:
    design = design_from_protocol(group_trial())
    assert design.group == GroupDesign("grp_id", 2, 8)
    assert design.stratum_keys == ("rush", "uic")
    assert design.arms == ("p4p", "ktw")
    slots = generate_list(design, new_seed(), 40)
    assert {s.stratum for s in slots} == {"rush", "uic"}
    assert {s.block_length for s in slots} <= {2, 4}


def test_a_group_design_needs_blocks_that_hold_the_ratio() -> None:
    from services.core.protocol import ProtocolError, parse_protocol

    data = plain_trial(method="group", block_lengths=[3], group={"group_field": "grp_id"})
    with pytest.raises(ProtocolError, match=r"randomization.block_lengths\[0\]: 3 is not a "
                                            "multiple of 2"):
        parse_protocol(data)
    no_section = plain_trial(method="group")
    with pytest.raises(ProtocolError, match="randomization.group: method 'group' needs"):
        parse_protocol(no_section)


def test_groups_closing_in_any_order_stay_balanced_per_stratum() -> None:
    """Groups close in the order staff close them; each takes its stratum's next slot, so
    at every point each stratum's groups are within half a block of 1:1, and exactly
    balanced at each block's end."""
    design = design_from_protocol(group_trial())
    slots = generate_list(design, new_seed(), 200)
    by_stratum = {k: [s for s in slots if s.stratum == k] for k in design.stratum_keys}
    rng = random.Random(15)
    taken = Counter[str]()
    arms: dict[str, Counter[str]] = {k: Counter() for k in design.stratum_keys}
    for _ in range(300):  # 300 groups closing at random sites
        stratum = rng.choice(design.stratum_keys)
        slot = by_stratum[stratum][taken[stratum]]
        taken[stratum] += 1
        arms[stratum][slot.arm] += 1
        gap = abs(arms[stratum]["p4p"] - arms[stratum]["ktw"])
        assert gap <= max(design.block_lengths) // 2
        following = by_stratum[stratum][taken[stratum]]
        if following.block != slot.block:  # the group closed its block
            assert gap == 0
    print(f"\ngroups per arm after 300 closes: { {k: dict(v) for k, v in arms.items()} }")


@pytest.mark.parametrize(("kwargs", "outcome"), [
    ({"already_member": True, "status": GroupStatus.CLOSED}, JoinOutcome.ALREADY),
    ({"status": None}, JoinOutcome.JOINED),
    ({"status": GroupStatus.OPEN, "members": 2}, JoinOutcome.JOINED),
    ({"status": GroupStatus.CLOSED, "members": 2}, JoinOutcome.LATE),
    ({"status": GroupStatus.OPEN, "members": 3}, JoinOutcome.FULL),
    ({"status": GroupStatus.OPEN, "members": 1, "group_stratum": "uic"},
     JoinOutcome.OTHER_STRATUM),
])
def test_join_outcomes(kwargs: dict, outcome: JoinOutcome) -> None:
    args = {"already_member": False, "members": 0, "group_stratum": "rush",
            "member_stratum": "rush", "design": GD, **kwargs}
    assert join_outcome(**args) is outcome


def test_a_group_closes_once_and_only_with_enough_members() -> None:
    with pytest.raises(UnknownGroup):
        check_closable("G1", status=None, members=0, design=GD)
    with pytest.raises(GroupTooSmall) as small:
        check_closable("G1", status=GroupStatus.OPEN, members=1, design=GD)
    assert "at least 2" in str(small.value)
    with pytest.raises(GroupClosed):
        check_closable("G1", status=GroupStatus.CLOSED, members=3, design=GD)
    check_closable("G1", status=GroupStatus.OPEN, members=2, design=GD)


@pytest.mark.parametrize("value", ["", "  ", "a/b", "-x", "x" * 65, "G 1"])
def test_a_group_id_that_is_no_id_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(GroupError) as err:
        group_id_of(GD, {"grp_id": value})
    assert err.value.field == "grp_id"
    assert group_id_of(GD, {"grp_id": " G-2024.03_a "}) == "G-2024.03_a"


def test_the_next_group_arm_is_guessed_at_the_blocks_theoretical_rate() -> None:
    """The unit of randomization is the group: an observer who knows every earlier
    group's arm guesses the next group's as well as permuted blocks allow, no better.
    (A member's arm is fixed only when the whole group closes: membership cannot follow it.)"""
    design = design_from_protocol(group_trial())
    slots = generate_list(design, new_seed(), 3000)
    guess = convergence_guess(list(design.arms), [1, 1])
    rates = [guess_rate([s.arm for s in slots if s.stratum == k], guess)
             for k in design.stratum_keys]
    observed = sum(rates) / len(rates)
    theory = convergence_theory([1, 1], list(design.block_lengths))
    print(f"\ngroup randomization (1:1, blocks of 2/4 groups): observer guesses the next "
          f"group's arm {observed:.3f}, theory {theory:.3f}; a coin 0.500")
    assert observed == pytest.approx(theory, abs=0.02)


def test_the_iact_mmrp_protocol_and_its_synthetic_cohort() -> None:
    """The seed trial: groups of the protocol's sizes, a latecomer who is not expected to be
    allocated, and the seed's attrition (each share of those still in)."""
    from services.core.protocol import load_protocol
    from sim.group_cohort import ATTRITION, make_group_cohort

    protocol = load_protocol("protocols/iact-mmrp.yaml")
    design = design_from_protocol(protocol)
    assert design.group == GroupDesign("scr_mmrp_group", 3, 8)
    assert design.stratum_keys == ("all",) and design.arms == ("mmrp", "mmrp_iact")
    assert [t.key for t in protocol.timepoints] == ["t0", "post_mmrp", "post_aftercare", "y1"]
    cohort = make_group_cohort(protocol, eligible=2000, withdrawn=300, ineligible=50)
    field = protocol.randomization.group.group_field  # type: ignore[union-attr]
    group_of = {p.record: dict(p.forms)["screening"][field] for p in cohort.people}
    members = [r for m in cohort.groups.values() for r in m]
    assert len(members) == len(set(members)) == 2000 - 300 - 1
    assert all(3 <= len(m) <= 8 for m in cohort.groups.values())
    assert all(group_of[r] == g for g, m in cohort.groups.items() for r in m)
    (late, late_group), = cohort.late.items()
    assert group_of[late] == late_group and late not in members
    assert not next(p for p in cohort.people if p.record == late).expects_allocation
    assert {p.record for p in cohort.people if p.expects_allocation} == set(members)
    still = len(cohort.followups)
    for i, lost in enumerate(ATTRITION):
        reached = sum(1 for f in cohort.followups.values() if len(f) > i)
        assert reached / still == pytest.approx(1 - lost, abs=0.05)
        still = reached
