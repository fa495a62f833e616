"""Importing a list made elsewhere: good lists load, every defect is named with row and column."""

from __future__ import annotations

from typing import Any

import pytest

from services.randomization.domain import (
    ImportProblem,
    ListDesign,
    ListImportError,
    Slot,
    generate_list,
    parse_list_csv,
)

from .conftest import to_csv

HEADER = "stratum,seq,block,block_length,module,arm"


@pytest.fixture
def slots(design: ListDesign, seed: bytes) -> list[Slot]:
    return generate_list(design, seed, 24)


def problems(text: str, design: ListDesign) -> list[ImportProblem]:
    with pytest.raises(ListImportError) as err:
        parse_list_csv(text, design)
    return list(err.value.problems)


def one(text: str, design: ListDesign) -> ImportProblem:
    found = problems(text, design)
    assert len(found) == 1, found
    return found[0]


def edit(slots: list[Slot], index: int, **change: Any) -> list[Slot]:
    copy = list(slots)
    copy[index] = copy[index]._replace(**change)
    return copy


def row_of(slots: list[Slot], stratum: str, seq: int) -> int:
    """Spreadsheet row of a slot in `to_csv(slots)`: header is row 1."""
    return next(i for i, s in enumerate(slots) if (s.stratum, s.seq) == (stratum, seq)) + 2


def test_a_generated_list_round_trips(design: ListDesign, slots: list[Slot]) -> None:
    assert parse_list_csv(to_csv(slots), design) == slots


def test_rows_may_come_in_any_order_with_excel_habits(design: ListDesign,
                                                      slots: list[Slot]) -> None:
    text = to_csv(list(reversed(slots)), delimiter=";").replace(
        "stratum;seq", "\ufeffStratum;SEQ") + ";;;;;\n\n"
    assert parse_list_csv(text, design) == slots


def test_a_cut_last_block_is_accepted(design: ListDesign, slots: list[Slot]) -> None:
    dys = [s for s in slots if s.stratum == "DYS"]
    cut = [s for s in slots if s.stratum != "DYS"] + dys[:-1]
    assert len(parse_list_csv(to_csv(cut), design)) == len(slots) - 1


def test_empty_file(design: ListDesign) -> None:
    p = one("", design)
    assert (p.row, p.column) == (1, None)
    assert "empty" in p.message


def test_missing_column(design: ListDesign, slots: list[Slot]) -> None:
    text = "\n".join(",".join(line.split(",")[:5]) for line in to_csv(slots).splitlines())
    p = one(text, design)
    assert (p.row, p.column) == (1, "arm")
    assert "missing" in p.message


def test_duplicate_and_unknown_columns(design: ListDesign) -> None:
    found = problems(HEADER + ",module,note\n", design)
    assert [(p.row, p.column) for p in found] == [(1, "module"), (1, "note")]


def test_unknown_column_is_reported_beside_the_rows_problems(design: ListDesign,
                                                              slots: list[Slot]) -> None:
    lines = to_csv(edit(slots, 0, arm="nope")).splitlines()
    text = "\n".join([lines[0] + ",note"] + [line + ",x" for line in lines[1:]])
    found = problems(text, design)
    assert [(p.row, p.column) for p in found] == [(1, "note"), (2, "arm")]


def test_wrong_field_count(design: ListDesign, slots: list[Slot]) -> None:
    lines = to_csv(slots).splitlines()
    lines[3] += ",extra"
    found = problems("\n".join(lines), design)
    assert found[0].row == 4
    assert "7 fields" in found[0].message


@pytest.mark.parametrize(("column", "value", "says"), [
    ("stratum", "XYZ", "not a stratum"),
    ("seq", "x", "not a whole number"),
    ("seq", "0", "not a whole number"),
    ("block", "-1", "not a whole number"),
    ("block_length", "6", "not an allowed block length"),
    ("module", "PRT", "not a module"),
    ("arm", "control", "not an arm"),
])
def test_bad_value_names_row_and_column(design: ListDesign, slots: list[Slot], column: str,
                                        value: str, says: str) -> None:
    lines = to_csv(slots).splitlines()
    fields = lines[5].split(",")
    fields[HEADER.split(",").index(column)] = value
    lines[5] = ",".join(fields)
    found = problems("\n".join(lines), design)
    assert (found[0].row, found[0].column) == (6, column)
    assert says in found[0].message


def test_arm_must_fit_the_module_in_the_stratums_cluster(design: ListDesign,
                                                         slots: list[Slot]) -> None:
    i = next(i for i, s in enumerate(slots) if s.stratum == "DYS" and s.module == "PERT")
    p = problems(to_csv(edit(slots, i, arm="non_personalized")), design)[0]
    assert (p.row, p.column) == (i + 2, "arm")
    assert "is arm personalized" in p.message


def test_every_stratum_needs_slots(design: ListDesign, slots: list[Slot]) -> None:
    p = one(to_csv([s for s in slots if s.stratum != "ID"]), design)
    assert (p.row, p.column) == (None, "stratum")
    assert "ID" in p.message


def test_duplicate_seq(design: ListDesign, slots: list[Slot]) -> None:
    i = row_of(slots, "AC", 3) - 2
    found = problems(to_csv([*slots, slots[i]]), design)
    assert (found[0].row, found[0].column) == (len(slots) + 2, "seq")
    assert f"first on row {i + 2}" in found[0].message


def test_gap_in_seq(design: ListDesign, slots: list[Slot]) -> None:
    gone = {("AC", 5), ("AC", 6), ("AC", 7), ("DYS", 1)}
    found = problems(to_csv([s for s in slots if (s.stratum, s.seq) not in gone]), design)
    assert [(p.row, p.column) for p in found] == [(None, "seq"), (None, "seq")]
    assert "AC: seq 5–7 missing" in found[0].message
    assert "DYS: seq 1 missing" in found[1].message


def test_block_numbers_must_run_along_seq(design: ListDesign, slots: list[Slot]) -> None:
    ac = [s for s in slots if s.stratum == "AC"]
    renumbered = [s._replace(block=s.block + 1) if s.block > 1 else s for s in ac]
    text = to_csv([s for s in slots if s.stratum != "AC"] + renumbered)
    p = one(text, design)
    assert p.column == "block"
    assert "block 2 expected" in p.message


def test_block_length_must_agree_within_a_block(design: ListDesign, slots: list[Slot]) -> None:
    i = row_of(slots, "ID", 2) - 2
    other = next(n for n in design.block_lengths if n != slots[i].block_length)
    found = problems(to_csv(edit(slots, i, block_length=other)), design)
    assert (found[0].row, found[0].column) == (i + 2, "block_length")
    assert "for the same block" in found[0].message


def test_only_the_last_block_may_be_incomplete(design: ListDesign, slots: list[Slot]) -> None:
    first_block = [s for s in slots if s.stratum == "ID" and s.block == 1]
    drop = first_block[-1]
    shifted = [s._replace(seq=s.seq - 1) if s.stratum == "ID" and s.seq > drop.seq else s
               for s in slots if s != drop]
    p = one(to_csv(shifted), design)
    assert (p.row, p.column) == (row_of(shifted, "ID", 1), "block")
    assert "only a stratum's last block may be incomplete" in p.message


def test_a_block_longer_than_its_length(design: ListDesign, slots: list[Slot]) -> None:
    ac = [s for s in slots if s.stratum == "AC"]
    merged = [s._replace(block=1, block_length=ac[0].block_length) if s.block == 2 else
              s._replace(block=s.block - 1) if s.block > 2 else s for s in ac]
    found = problems(to_csv([s for s in slots if s.stratum != "AC"] + merged), design)
    assert any("more than its block_length" in p.message and p.column == "block"
               for p in found)


def test_a_complete_block_with_the_wrong_ratio(design: ListDesign, slots: list[Slot]) -> None:
    i = next(i for i, s in enumerate(slots) if s.stratum == "DYS" and s.module == "EDDT")
    p = one(to_csv(edit(slots, i, module="PERT", arm="personalized")), design)
    first = next(s for s in slots if s.stratum == "DYS" and s.block == slots[i].block)
    assert (p.row, p.column) == (row_of(slots, "DYS", first.seq), "module")
    assert "must have PERT×" in p.message


def test_a_cut_block_cannot_exceed_a_modules_share(design: ListDesign) -> None:
    rows = ["AC,1,1,4,EMDI,personalized", "AC,2,1,4,EMDI,personalized",
            "AC,3,1,4,EMDI,personalized"]
    others = ["DYS,1,1,4,PERT,personalized", "ID,1,1,4,EDDT,personalized"]
    p = one("\n".join([HEADER, *rows, *others]), design)
    assert (p.row, p.column) == (2, "module")
    assert "holds at most EMDI×2" in p.message


def test_all_problems_are_collected_in_row_order(design: ListDesign, slots: list[Slot]) -> None:
    bad = edit(edit(slots, 2, module="XXX"), 9, seq=0)
    bad = edit(bad, 15, arm="nope")
    with pytest.raises(ListImportError) as err:
        parse_list_csv(to_csv(bad), design)
    rows = [p.row for p in err.value.problems if p.row is not None]
    assert {4, 11, 17} <= set(rows)
    assert rows == sorted(rows)
    assert err.value.field == err.value.problems[0].column
    assert "row 4, column module" in str(err.value)


def test_broken_quoting_stops_the_import_at_its_row(design: ListDesign) -> None:
    p = one(HEADER + '\nDYS,1,1,4,"PERT,personalized\n', design)
    assert p.row == 2
    assert "unreadable CSV" in p.message


def test_an_unclosed_quote_in_the_header_is_a_problem_not_a_crash(design) -> None:
    with pytest.raises(ListImportError) as info:
        parse_list_csv('"stratum,seq,block\n', design)
    assert "unreadable CSV" in str(info.value.problems[0].message)
