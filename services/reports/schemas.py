"""Request parameters of the reports API. Responses are the domain's figures
(services/reports/domain), serialized as they are; the README documents each shape."""

from __future__ import annotations

from enum import StrEnum


class TableFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class FlowFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    SVG = "svg"
