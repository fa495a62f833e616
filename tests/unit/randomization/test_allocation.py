"""Allocation helpers: stratum choice, pilot participants, balance reports, low strata."""

from __future__ import annotations

import dataclasses

import pytest

from services.randomization.domain import (
    Allocation,
    ListDesign,
    ModuleBalance,
    NotInDesignError,
    module_balance,
    pilot_module,
    strata_running_low,
    stratum_balance,
    stratum_of,
)


def test_stratum_of_a_participant(design: ListDesign, site_design: ListDesign) -> None:
    assert stratum_of(design, "ID") == "ID"
    assert stratum_of(design, "ID", "site-a") == "ID"  # not stratified by site: ignored
    assert stratum_of(site_design, "ID", "site-a") == "ID|site-a"


def test_stratum_of_names_the_wrong_field(design: ListDesign, site_design: ListDesign) -> None:
    with pytest.raises(NotInDesignError) as cluster:
        stratum_of(design, "dys")
    with pytest.raises(NotInDesignError) as site:
        stratum_of(site_design, "DYS", None)
    assert (cluster.value.field, site.value.field) == ("cluster", "site")


@pytest.mark.parametrize(("cluster", "module"), [("DYS", "PERT"), ("ID", "EDDT"),
                                                 ("AC", "EMDI")])
def test_pilot_participants_get_the_matching_module(design: ListDesign, cluster: str,
                                                    module: str) -> None:
    assert pilot_module(design, cluster) == module


def test_pilot_module_of_an_unknown_cluster(design: ListDesign) -> None:
    with pytest.raises(NotInDesignError) as err:
        pilot_module(design, "XX")
    assert err.value.field == "cluster"


ALLOCATIONS = [
    Allocation("PERT", "DYS"), Allocation("PERT", "DYS"), Allocation("EDDT", "DYS"),
    Allocation("EMDI", "ID"),
    Allocation("PERT", None, pilot=True), Allocation("EMDI", None, pilot=True),
]


def test_stratum_balance_counts_modules_and_arms(design: ListDesign) -> None:
    report = {b.stratum: b for b in stratum_balance(design, ALLOCATIONS)}
    assert list(report) == ["AC", "DYS", "ID"]
    dys = report["DYS"]
    assert dys.allocated == 3
    assert dys.by_module == {"PERT": 2, "EDDT": 1, "EMDI": 0}
    assert dys.by_arm == {"personalized": 2, "non_personalized": 1}
    assert dys.expected_by_module == {"PERT": 1.5, "EDDT": 0.75, "EMDI": 0.75}
    assert report["ID"].by_arm == {"personalized": 0, "non_personalized": 1}
    assert report["AC"].allocated == 0


def test_module_balance_is_blinded_and_leaves_pilots_out(design: ListDesign) -> None:
    report = module_balance(design, ALLOCATIONS)
    assert report == [ModuleBalance("PERT", 2), ModuleBalance("EDDT", 1),
                      ModuleBalance("EMDI", 1)]
    assert {f.name for f in dataclasses.fields(ModuleBalance)} == {"module", "allocated"}


def test_balance_refuses_unknown_strata_and_modules(design: ListDesign) -> None:
    with pytest.raises(NotInDesignError) as stratum:
        stratum_balance(design, [Allocation("PERT", "XX")])
    with pytest.raises(NotInDesignError) as module:
        stratum_balance(design, [Allocation("YOGA", "DYS")])
    with pytest.raises(NotInDesignError) as blinded:
        module_balance(design, [Allocation("YOGA", "DYS")])
    assert (stratum.value.field, module.value.field, blinded.value.field) == \
        ("stratum", "module", "module")


def test_strata_below_the_threshold_run_low(design: ListDesign) -> None:
    threshold = design.low_slots_threshold
    free = {"AC": threshold, "DYS": threshold - 1}
    assert strata_running_low(design, free) == ["DYS", "ID"]
