"""Pure rules of randomization lists: design, generation, import, sealing, commitments.

No I/O, no database: callers pass the protocol, seeds, keys and text in. Typical use:

    design = design_from_protocol(protocol)
    slots = generate_list(design, seed)      # seed = new_seed(); whoever holds it can rebuild
    # or: slots = parse_list_csv(csv_text, design)   # ListImportError carries every problem
    sealed = seal_batch(slots, key=list_key, list_id=list_id)        # batch 1
    commitment = ListCommitment(list_id).extended(sealed.commitment)  # publish .statement()
    # store each of sealed.slots with its batch: (stratum, seq, nonce, ciphertext, leaf)

    stratum = stratum_of(design, cluster, site)   # allocation: next free row of this stratum
    opened = unseal_slot(row, key=list_key, list_id=list_id)   # opened.slot.module, .arm
    module = pilot_module(design, cluster)        # pilot (QA) participant: no slot used

    if stratum in strata_running_low(design, free_slots_by_stratum):
        new = extend_stratum(design, stratum, seed, after=last_opened.slot, min_new_slots=n)
        ext = seal_batch(new, key=list_key, list_id=list_id, batch=commitment.next_batch)
        commitment = commitment.extended(ext.commitment)   # earlier batches unchanged

    proof = prove_slot(leaves_of_batch_in_order, commitment.batches[b - 1], stratum, seq)
    verify_list(unseal_slots(rows, key=list_key, list_id=list_id), commitment)  # closure
"""

from .allocation import (
    Allocation,
    ModuleBalance,
    StratumBalance,
    low_check_due,
    module_balance,
    pilot_module,
    strata_running_low,
    stratum_balance,
    stratum_of,
)
from .commitment import (
    SCHEME,
    BatchCommitment,
    ListCommitment,
    StratumRange,
    commit_batch,
    slot_leaf,
)
from .csv_import import COLUMNS, parse_list_csv
from .design import ListDesign, StratumDesign, build_design, design_from_protocol, stratum_key
from .errors import (
    CommitmentError,
    DesignError,
    ExtensionError,
    ImportProblem,
    ListImportError,
    NotInDesignError,
    RandomizationError,
    SealError,
    SecretError,
)
from .generate import extend_stratum, generate_list, generate_stratum
from .merkle import InclusionProof
from .sealing import (
    KEY_BYTES,
    SealedBatch,
    SealedSlot,
    new_list_key,
    seal_batch,
    unseal_slot,
    unseal_slots,
)
from .slots import OpenedSlot, Slot, canonical_order, decode_slot, encode_slot
from .stream import SEED_BYTES, new_seed
from .verification import prove_slot, verify_batch, verify_list, verify_slot

__all__ = [
    "COLUMNS",
    "KEY_BYTES",
    "SCHEME",
    "SEED_BYTES",
    "Allocation",
    "BatchCommitment",
    "CommitmentError",
    "DesignError",
    "ExtensionError",
    "ImportProblem",
    "InclusionProof",
    "ListCommitment",
    "ListDesign",
    "ListImportError",
    "ModuleBalance",
    "NotInDesignError",
    "OpenedSlot",
    "RandomizationError",
    "SealError",
    "SealedBatch",
    "SealedSlot",
    "SecretError",
    "Slot",
    "StratumBalance",
    "StratumDesign",
    "StratumRange",
    "build_design",
    "canonical_order",
    "commit_batch",
    "decode_slot",
    "design_from_protocol",
    "encode_slot",
    "extend_stratum",
    "generate_list",
    "generate_stratum",
    "low_check_due",
    "module_balance",
    "new_list_key",
    "new_seed",
    "parse_list_csv",
    "pilot_module",
    "prove_slot",
    "seal_batch",
    "slot_leaf",
    "strata_running_low",
    "stratum_balance",
    "stratum_key",
    "stratum_of",
    "unseal_slot",
    "unseal_slots",
    "verify_batch",
    "verify_list",
    "verify_slot",
]
