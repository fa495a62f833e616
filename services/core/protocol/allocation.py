"""Rules of the allocation service.

The active model and its review threshold; the reference norms behind T-scores; how
training recognises each cluster among the soft k-means components; the training
settings that reproduce the shipped model; and the published figures the synthetic
reference cohort is drawn from (no patient data ships with Tailor).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from .base import Strict

# The nine MPI-D scales, in the classifier's feature order.
ScaleKey = Literal["PS", "I", "LC", "AD", "S", "PR", "SR", "DR", "GA"]
SCALE_KEYS: tuple[str, ...] = get_args(ScaleKey)


def _nine_scales(v: Mapping[str, object], what: str) -> None:
    missing = [s for s in SCALE_KEYS if s not in v]
    unknown = [k for k in v if k not in SCALE_KEYS]
    if missing or unknown:
        raise ValueError(f"{what} must name the nine MPI-D scales {list(SCALE_KEYS)}; "
                         f"missing {missing}, unknown {unknown}")


class ActiveModel(Strict):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Norm(Strict):
    mean: float
    sd: float = Field(gt=0)


class ClusterProfile(Strict):
    """A cluster is the component with the highest/lowest mean on these scales."""

    highest: list[ScaleKey] = Field(default_factory=list)
    lowest: list[ScaleKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_rule(self) -> ClusterProfile:
        if not self.highest and not self.lowest:
            raise ValueError("a cluster profile needs at least one 'highest' or 'lowest' scale")
        return self


class TrainingSettings(Strict):
    seed: int = Field(ge=0)
    mixture_inits: int = Field(gt=0, description="soft k-means restarts (best likelihood wins)")
    trees: int = Field(gt=0)
    min_samples_leaf: int = Field(
        ge=1, description="smallest leaf: steadies the forest's probabilities in sparse regions"
    )
    cv_folds: int = Field(ge=2)
    naming_margin_sd: float = Field(
        ge=0, description="a profile rule must beat the runner-up by this many SDs"
    )


class AgeDistribution(Strict):
    mean: float
    sd: float = Field(gt=0)
    min: int = Field(ge=0)
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> AgeDistribution:
        if not self.min < self.mean < self.max:
            raise ValueError("age: need min < mean < max")
        return self


class SyntheticCluster(Strict):
    share: float = Field(gt=0, le=1)
    centroid: dict[str, float]

    @field_validator("centroid")
    @classmethod
    def _nine_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        _nine_scales(v, "centroid")
        if any(not 0 <= x <= 6 for x in v.values()):
            raise ValueError("centroid values are scale means and must lie within 0-6")
        return v


class SyntheticReference(Strict):
    """Published summary figures only: the synthetic cohort is drawn from these."""

    source: str
    size: int = Field(gt=0)
    clusters: dict[str, SyntheticCluster] = Field(min_length=2)
    item_noise_sd: float = Field(ge=0, description="item-to-item spread around a scale's level")
    not_applicable_share: float = Field(
        ge=0, lt=1, description="share answering -99 on the items that allow it"
    )
    age: AgeDistribution
    female_share: float = Field(ge=0, le=1)


class AllocationRules(Strict):
    model: ActiveModel
    low_confidence_threshold: float = Field(gt=0, lt=1)
    reference_norms: dict[str, Norm]
    cluster_profiles: dict[str, ClusterProfile] = Field(min_length=2)
    training: TrainingSettings
    synthetic_reference: SyntheticReference
    # Optional REDCap fields (baseline event) passed on with `cluster_assigned`: the
    # participant's site, needed when randomization stratifies by site, and the flag of a
    # quality-assurance pilot participant ("1" = pilot), allocated outside the lists.
    site_field: str | None = Field(
        default=None, description="REDCap field holding the site key (e.g. a DAG)")
    pilot_field: str | None = Field(
        default=None, description="REDCap yes/no field marking a pilot (QA) participant")

    @field_validator("reference_norms")
    @classmethod
    def _nine_norms(cls, v: dict[str, Norm]) -> dict[str, Norm]:
        _nine_scales(v, "reference_norms")
        return v

    @model_validator(mode="after")
    def _same_clusters(self) -> AllocationRules:
        named, drawn = set(self.cluster_profiles), set(self.synthetic_reference.clusters)
        if named != drawn:
            raise ValueError(
                f"synthetic_reference.clusters {sorted(drawn)} must name the same clusters "
                f"as cluster_profiles {sorted(named)}")
        return self
