"""Later randomizations of a multi-stage design (SMART): the decision rule and the stage lists.

A participant reaches a stage when the stage timepoint's forms are complete in REDCap and
they hold a first-stage allocation (and have not withdrawn). The rule then classes them by
their value of `rule.field` against their baseline value of `rule.baseline_field`:

    responder      when  value <= baseline × (1 − min_reduction)   (a fall of at least it)
    non-responder  otherwise

in exact decimal arithmetic, so a fall of exactly 30% is a response (3 of 10, 2.1 of 7).
A missing, non-numeric or negative value, or a baseline of 0 (no fall can be measured from
it), cannot be scored: the participant needs review, and nothing is allocated.

Each stage has its own strata, one per outcome × first-stage arm (`s2:responders:full`):
responders and non-responders are randomized among their own options, by permuted blocks
of the stage's block lengths, separately after each first-stage arm so that every sequence
of treatments stays balanced. The strata are part of the list (sealed, committed, extended
and verified as the first stage's are); their slots' module and arm are the option's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Literal

from .errors import RandomizationError

if TYPE_CHECKING:
    from services.core.protocol.randomization import ResponseRule, Stage

Outcome = Literal["responders", "non_responders"]
OUTCOMES: tuple[Outcome, ...] = ("responders", "non_responders")
STAGE_SEPARATOR = ":"  # no level may hold it (LEVEL_KEY): stage strata never meet the first's


class Unscorable(RandomizationError):
    """The rule cannot class the participant; `field` names the REDCap field at fault.
    The message never carries the value (pain data beside a record id)."""


def _number(raw: str | None, field: str) -> Decimal:
    text = (raw or "").strip()
    if not text:
        raise Unscorable(f"{field}: no value", field=field)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Unscorable(f"{field}: not a number", field=field) from None
    if not value.is_finite():
        raise Unscorable(f"{field}: not a number", field=field)
    if value < 0:
        raise Unscorable(f"{field}: negative", field=field)
    return value


def classify(rule: ResponseRule, value: str | None, baseline: str | None) -> Outcome:
    """`responders` or `non_responders`; Unscorable names the field that prevents it."""
    start = _number(baseline, rule.baseline_field)
    now = _number(value, rule.field)
    if start == 0:
        raise Unscorable(f"{rule.baseline_field}: the baseline is 0, no reduction can be "
                         "measured from it", field=rule.baseline_field)
    # str() of the float gives its shortest spelling: 0.3 is 3/10, not 0.29999…
    threshold = start * (1 - Decimal(str(rule.min_reduction)))
    return "responders" if now <= threshold else "non_responders"


def stage_stratum_key(stage: str, outcome: str, arm: str) -> str:
    return STAGE_SEPARATOR.join((stage, outcome, arm))


@dataclass(frozen=True)
class StageDesign:
    """One stage as the list sees it: its strata, per outcome and first-stage arm."""

    key: str
    timepoint: str
    block_lengths: tuple[int, ...]
    options: tuple[tuple[Outcome, tuple[tuple[str, int], ...]], ...]  # outcome → (option, ratio)
    after_arms: tuple[str, ...]  # first-stage arms whose participants reach this stage

    def stratum_key(self, outcome: str, arm: str) -> str:
        if outcome not in OUTCOMES:
            raise RandomizationError(f"{outcome!r} is not an outcome ({', '.join(OUTCOMES)})",
                                     field="outcome")
        if arm not in self.after_arms:
            raise RandomizationError(f"{arm!r} is not a first-stage arm of stage {self.key}",
                                     field="arm")
        return stage_stratum_key(self.key, outcome, arm)

    def options_of(self, outcome: str) -> tuple[str, ...]:
        return tuple(o for out, opts in self.options if out == outcome for o, _ in opts)


def stage_design(stage: Stage, arms: tuple[str, ...]) -> StageDesign:
    return StageDesign(
        key=stage.key, timepoint=stage.timepoint, block_lengths=tuple(sorted(stage.block_lengths)),
        options=(("responders", tuple((o.key, o.ratio) for o in stage.responders)),
                 ("non_responders", tuple((o.key, o.ratio) for o in stage.non_responders))),
        after_arms=arms)


@dataclass(frozen=True)
class StageBalance:
    """Unblinded: allocations of one stage stratum per option, against its ratio."""

    stratum: str
    allocated: int
    by_option: dict[str, int]
    expected: dict[str, float]


def stage_balance(stage: StageDesign, options_by_stratum: dict[str, list[str]]
                  ) -> list[StageBalance]:
    """Per stratum of the stage (outcome × first-stage arm), in canonical order."""
    out = []
    for outcome, weights in stage.options:
        unit = sum(w for _, w in weights)
        for arm in stage.after_arms:
            key = stage.stratum_key(outcome, arm)
            got = options_by_stratum.get(key, [])
            counts = {o: got.count(o) for o, _ in weights}
            out.append(StageBalance(key, len(got), counts,
                                    {o: len(got) * w / unit for o, w in weights}))
    return sorted(out, key=lambda b: b.stratum)
