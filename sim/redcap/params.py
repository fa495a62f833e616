"""The parameters of one API call, read the way REDCap's PHP reads a form-encoded POST.

Lists arrive as indexed keys (`records[0]`, `records[1]`), as PHP's `records[]`, or as a
comma-separated string (`fields=a,b`); all three give the same list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .formats import FORMATS

_INDEXED = re.compile(r"^([A-Za-z_]+)\[(\d*)\]$")
LIST_PARAMS = frozenset({"records", "fields", "forms", "events", "arms", "dags"})


class ApiError(Exception):
    """An error REDCap answers with `status` and `message` in the requested return format."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ApiRequest:
    scalars: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    # the address REDCap is reached at (links it hands out start with it)
    base_url: str = ""
    # uploaded files by parameter name: (file name, content, content type)
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> ApiRequest:
        scalars: dict[str, str] = {}
        indexed: dict[str, list[tuple[int, str]]] = {}
        for key, value in pairs:
            m = _INDEXED.match(key)
            if m:
                items = indexed.setdefault(m.group(1), [])
                items.append((int(m.group(2)) if m.group(2) else len(items), value))
            else:
                scalars[key] = value
        lists = {k: [v for _, v in sorted(items)] for k, items in indexed.items()}
        return cls(scalars, lists)

    def get(self, name: str, default: str = "") -> str:
        return self.scalars.get(name, default).strip()

    def list(self, name: str) -> list[str]:
        if name in self.lists:
            values = self.lists[name]
        elif self.get(name):
            values = self.get(name).split(",")
        else:
            values = []
        return [v.strip() for v in values if v.strip()]

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.get(name).lower()
        return default if raw == "" else raw in ("1", "true", "yes")

    @property
    def content(self) -> str:
        return self.get("content")

    @property
    def action(self) -> str:
        return self.get("action", "export") or "export"

    @property
    def format(self) -> str:
        fmt = self.get("format", "xml").lower() or "xml"
        if fmt not in FORMATS:
            raise ApiError(400, 'The value of the parameter "format" is not valid')
        return fmt

    @property
    def return_format(self) -> str:
        """Errors (and import results) come back in returnFormat, else format, else xml."""
        for key in ("returnFormat", "format"):
            fmt = self.get(key).lower()
            if fmt in FORMATS:
                return fmt
        return "xml"
