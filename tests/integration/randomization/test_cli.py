"""`tailor randomization`: offline generation from a seed, and commitment checks by anyone."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.core.protocol import TrialProtocol
from services.randomization.cli import app
from services.randomization.domain import (
    ListCommitment,
    design_from_protocol,
    generate_list,
    seal_batch,
    unseal_slots,
)
from services.randomization.keys import ListKey

runner = CliRunner()
SEED = "ab" * 32


def test_generate_writes_the_import_format_and_the_seed_reproduces_it(
        tmp_path: Path, protocol: TrialProtocol) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, second):
        result = runner.invoke(app, ["generate", "--out", str(out), "--seed", SEED,
                                     "--slots-per-stratum", "12"])
        assert result.exit_code == 0, result.output
    assert first.read_text() == second.read_text()
    lines = first.read_text().splitlines()
    slots = generate_list(design_from_protocol(protocol), bytes.fromhex(SEED), 12)
    assert lines[0] == "stratum,seq,block,block_length,module,arm"
    assert lines[1:] == [",".join(map(str, s)) for s in slots]
    bad = runner.invoke(app, ["generate", "--out", str(first), "--seed", "xyz"])
    assert bad.exit_code == 2


def test_verify_accepts_the_unsealed_list_and_catches_a_changed_slot(
        tmp_path: Path, protocol: TrialProtocol, list_key: ListKey) -> None:
    design = design_from_protocol(protocol)
    sealed = seal_batch(generate_list(design, bytes.fromhex(SEED), 8), key=list_key.material,
                        list_id="L1")
    commitment = ListCommitment("L1").extended(sealed.commitment)
    opened = unseal_slots(sealed.slots, key=list_key.material, list_id="L1")
    listing = {"slots": [{**o.slot._asdict(), "salt": o.salt.hex()} for o in opened]}
    (tmp_path / "c.json").write_text(json.dumps({"statement": commitment.statement()}))
    (tmp_path / "u.json").write_text(json.dumps(listing))
    ok = runner.invoke(app, ["verify", str(tmp_path / "c.json"), str(tmp_path / "u.json")])
    assert ok.exit_code == 0 and commitment.digest() in ok.output

    slot = listing["slots"][3]
    slot["module"] = next(m for m in design.modules if m != slot["module"])
    (tmp_path / "u.json").write_text(json.dumps(listing))
    changed = runner.invoke(app, ["verify", str(tmp_path / "c.json"), str(tmp_path / "u.json")])
    assert changed.exit_code == 1 and "root" in changed.output
