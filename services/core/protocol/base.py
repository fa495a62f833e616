"""Common building blocks of the protocol model.

Every protocol model forbids unknown keys: a typo in the YAML must fail start-up,
not be ignored silently.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A protocol section: frozen, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def iana_zone(value: str) -> str:
    """A field validator body: the value must name an IANA time zone."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone") from None
    return value
