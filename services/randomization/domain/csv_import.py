"""Importing a randomization list made elsewhere (e.g. by a trials unit) from CSV text.

Format: text (a leading byte-order mark is ignored), comma-separated (semicolon or tab
separators are recognised from the header row), one header row naming these columns in
any order (case does not matter), then one row per slot in any order:

    stratum       stratum key: the cluster key, or `cluster|site` when stratified by site
    seq           allocation order within the stratum: 1, 2, 3, … without gaps or repeats
    block         block number within the stratum: 1, 2, … along seq; a block is a run of
                  consecutive seq
    block_length  the length the block was drawn with: one of the protocol's block lengths
    module        module key
    arm           arm key: the arm the module has in the stratum's cluster

Every stratum of the design must have rows. Every complete block holds the exact module
ratio; only a stratum's last block may be incomplete (the list was cut short), and then it
holds no module more often than a complete block would. Blank rows are skipped.

Every defect is reported, each with its spreadsheet row (header = row 1) and column.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .design import ListDesign, StratumDesign
from .errors import ImportProblem, ListImportError
from .slots import Slot, canonical_order

COLUMNS = ("stratum", "seq", "block", "block_length", "module", "arm")
_NATURAL = re.compile(r"[1-9][0-9]*")


@dataclass
class _Row:
    row: int
    stratum: StratumDesign
    seq: int | None
    block: int | None
    length: int | None
    module: str | None
    arm: str | None


class _Placed(NamedTuple):
    """A row whose place in the stratum (seq, block, block_length) is known."""

    row: int
    seq: int
    block: int
    length: int
    module: str | None


def _placed(r: _Row) -> _Placed | None:
    if r.seq is None or r.block is None or r.length is None:
        return None
    return _Placed(r.row, r.seq, r.block, r.length, r.module)


def _slot(r: _Row) -> Slot | None:
    if r.seq is None or r.block is None or r.length is None or r.module is None or r.arm is None:
        return None
    return Slot(r.stratum.key, r.seq, r.block, r.length, r.module, r.arm)


def parse_list_csv(text: str, design: ListDesign) -> list[Slot]:
    """The slots of a valid list in canonical order, or ListImportError with every problem."""
    problems: list[ImportProblem] = []
    rows = _read_rows(text, design, problems)
    if rows is None:
        raise ListImportError(problems)  # the header is unusable: nothing else can be said
    by_stratum: dict[str, list[_Row]] = {}
    for row in rows:
        by_stratum.setdefault(row.stratum.key, []).append(row)
    for key in design.stratum_keys:
        if key not in by_stratum:
            problems.append(ImportProblem(None, "stratum", f"stratum {key} has no slots"))
    for stratum_rows in by_stratum.values():
        _check_stratum(stratum_rows, problems)
    if problems:
        problems.sort(key=lambda p: (p.row is None, p.row or 0))
        raise ListImportError(problems)
    slots = (_slot(r) for stratum_rows in by_stratum.values() for r in stratum_rows)
    return canonical_order(s for s in slots if s is not None)  # no problems: all are complete


def _header(reader: Iterator[list[str]],
            problems: list[ImportProblem]) -> tuple[dict[str, int], int] | None:
    """Column positions and row width, or None when rows cannot be read (problems say why)."""
    try:
        header = next(reader, None)
    except csv.Error as err:  # an unclosed quote in the very first row
        problems.append(ImportProblem(1, None, f"unreadable CSV: {err}"))
        return None
    if not header or not any(h.strip() for h in header):
        problems.append(ImportProblem(1, None, "the file is empty; the first row must name "
                                      f"the columns {', '.join(COLUMNS)}"))
        return None
    names = [h.strip().lower() for h in header]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(ImportProblem(1, name, "column appears twice"))
        elif name not in COLUMNS:
            problems.append(ImportProblem(
                1, name or f"#{i + 1}", f"unknown column (expected: {', '.join(COLUMNS)})"))
    missing = [c for c in COLUMNS if c not in names]
    for c in missing:
        problems.append(ImportProblem(1, c, "required column is missing"))
    if missing or len(set(names)) != len(names):
        return None
    return {c: names.index(c) for c in COLUMNS}, len(names)


def _read_rows(text: str, design: ListDesign,
               problems: list[ImportProblem]) -> list[_Row] | None:
    text = text.removeprefix("\ufeff")
    first = text.partition("\n")[0]
    delimiter = next((d for d in (",", ";", "\t") if d in first), ",")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    header = _header(reader, problems)
    if header is None:
        return None
    index, width = header
    rows: list[_Row] = []
    while True:
        try:
            fields = next(reader, None)
        except csv.Error as err:  # e.g. an unclosed quote swallowing the rest of the file
            problems.append(ImportProblem(reader.line_num, None, f"unreadable CSV: {err}"))
            return None
        if fields is None:
            return rows
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != width:
            problems.append(ImportProblem(reader.line_num, None,
                                          f"has {len(fields)} fields, the header has {width}"))
            continue
        row = _parse_row(reader.line_num, {c: fields[i].strip() for c, i in index.items()},
                         design, problems)
        if row is not None:
            rows.append(row)


def _natural(row: int, column: str, value: str, problems: list[ImportProblem]) -> int | None:
    if _NATURAL.fullmatch(value):
        return int(value)
    problems.append(ImportProblem(row, column, f"{value!r} is not a whole number ≥ 1"))
    return None


def _parse_row(row: int, v: dict[str, str], design: ListDesign,
               problems: list[ImportProblem]) -> _Row | None:
    if v["stratum"] not in design.stratum_keys:
        problems.append(ImportProblem(row, "stratum", f"{v['stratum']!r} is not a stratum "
                                      f"(known: {', '.join(design.stratum_keys)})"))
        return None
    stratum = design.stratum(v["stratum"])
    seq = _natural(row, "seq", v["seq"], problems)
    block = _natural(row, "block", v["block"], problems)
    length = _natural(row, "block_length", v["block_length"], problems)
    if length is not None and length not in design.block_lengths:
        problems.append(ImportProblem(row, "block_length", f"{length} is not an allowed block "
                                      f"length ({', '.join(map(str, design.block_lengths))})"))
        length = None
    module: str | None = v["module"]
    if module not in design.modules:
        problems.append(ImportProblem(row, "module", f"{module!r} is not a module "
                                      f"(known: {', '.join(design.modules)})"))
        module = None
    arm: str | None = v["arm"]
    if arm not in design.arms:
        problems.append(ImportProblem(row, "arm", f"{arm!r} is not an arm "
                                      f"(known: {', '.join(design.arms)})"))
        arm = None
    elif module is not None and arm != stratum.arm_of(module):
        problems.append(ImportProblem(
            row, "arm", f"module {module} in stratum {stratum.key} (cluster {stratum.cluster}) "
            f"is arm {stratum.arm_of(module)}, not {arm}"))
        arm = None
    return _Row(row, stratum, seq, block, length, module, arm)


def _check_stratum(rows: list[_Row], problems: list[ImportProblem]) -> None:
    stratum = rows[0].stratum
    numbered = sorted((r.seq, r.row) for r in rows if r.seq is not None)
    first_row: dict[int, int] = {}
    for seq, row in numbered:
        if seq in first_row:
            problems.append(ImportProblem(row, "seq", f"seq {seq} of stratum {stratum.key} "
                                          f"appears again (first on row {first_row[seq]})"))
        else:
            first_row[seq] = row
    gaps = _missing_runs(sorted(first_row))
    for lo, hi in gaps:
        span = f"seq {lo}" if lo == hi else f"seq {lo}–{hi}"
        problems.append(ImportProblem(None, "seq", f"stratum {stratum.key}: {span} missing "
                                      "(sequence numbers run 1, 2, 3, … without gaps)"))
    placed = [p for p in map(_placed, rows) if p is not None]
    if gaps or len(numbered) != len(first_row) or len(placed) != len(rows):
        return  # block checks would only repeat the problems above
    _check_blocks(stratum, sorted(placed, key=lambda p: p.seq), problems)


def _missing_runs(seqs: list[int]) -> list[tuple[int, int]]:
    runs, expected = [], 1
    for s in seqs:
        if s > expected:
            runs.append((expected, s - 1))
        expected = s + 1
    return runs


def _check_blocks(stratum: StratumDesign, ordered: list[_Placed],
                  problems: list[ImportProblem]) -> None:
    runs: list[list[_Placed]] = []
    for r in ordered:
        if runs and r.block == runs[-1][0].block:
            runs[-1].append(r)
            continue
        expected = runs[-1][0].block + 1 if runs else 1
        if r.block != expected:
            problems.append(ImportProblem(r.row, "block", f"block {r.block} at seq {r.seq}, "
                                          f"block {expected} expected (blocks run 1, 2, … "
                                          "along seq, each a run of consecutive seq)"))
        runs.append([r])
    for i, run in enumerate(runs):
        _check_block(stratum, run, last=i == len(runs) - 1, problems=problems)


def _check_block(stratum: StratumDesign, run: list[_Placed], *, last: bool,
                 problems: list[ImportProblem]) -> None:
    head = run[0]
    length = head.length
    name = f"stratum {stratum.key} block {head.block} (seq {head.seq}–{run[-1].seq})"
    for r in run[1:]:
        if r.length != length:
            problems.append(ImportProblem(r.row, "block_length", f"{r.length} differs from "
                                          f"{length} on row {head.row} for the same block"))
    if len(run) > length:
        problems.append(ImportProblem(head.row, "block", f"{name} has {len(run)} slots, "
                                      f"more than its block_length {length}"))
        return
    if len(run) < length and not last:
        problems.append(ImportProblem(head.row, "block", f"{name} has {len(run)} of {length} "
                                      "slots; only a stratum's last block may be incomplete"))
        return
    modules = [r.module for r in run if r.module is not None]
    if len(modules) < len(run):
        return  # an unknown module was reported on its row already
    have = Counter(modules)
    want = stratum.expected_counts(length)
    shown = ", ".join(f"{m}×{have[m]}" for m in want)
    needed = ", ".join(f"{m}×{n}" for m, n in want.items())
    if len(run) == length and have != Counter(want):
        problems.append(ImportProblem(head.row, "module", f"{name} has {shown}; a complete "
                                      f"block of {length} must have {needed}"))
    elif any(have[m] > want[m] for m in have):
        problems.append(ImportProblem(head.row, "module", f"{name}, incomplete, has {shown}; "
                                      f"a block of {length} holds at most {needed}"))
