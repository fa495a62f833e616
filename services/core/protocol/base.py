"""Common building blocks of the protocol model.

Every protocol model forbids unknown keys: a typo in the YAML must fail start-up,
not be ignored silently.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A protocol section: frozen, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
