"""The answer to one API call: body, media type, status."""

from __future__ import annotations

from dataclasses import dataclass, field

from .formats import MEDIA_TYPES, render_error


@dataclass(frozen=True)
class ApiResult:
    body: str | bytes
    media_type: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def file(cls, content: bytes, name: str, mime: str) -> ApiResult:
        """A file as REDCap sends it: its name in the Content-Type's `name` parameter."""
        safe = name.replace('"', "").replace("\r", "").replace("\n", "")
        return cls(content, f'{mime or "application/octet-stream"}; name="{safe}"')

    @classmethod
    def data(cls, body: str, fmt: str) -> ApiResult:
        return cls(body, MEDIA_TYPES[fmt] + "; charset=utf-8")

    @classmethod
    def text(cls, body: str) -> ApiResult:
        """Plain answers (version, a token, the next record name) as REDCap sends them."""
        return cls(body, "text/html; charset=utf-8")

    @classmethod
    def error(cls, status: int, message: str, fmt: str) -> ApiResult:
        return cls(render_error(message, fmt), MEDIA_TYPES[fmt] + "; charset=utf-8", status)
