"""REDCap's wire formats: json, csv and xml for data, errors and imported payloads.

Errors go out in the requested format exactly as REDCap writes them:
json `{"error": "..."}`, csv `ERROR: ...`, xml `<hash><error>...</error></hash>`.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

FORMATS = ("json", "csv", "xml")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "xml": "text/xml"}
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>'


class ImportFormatError(ValueError):
    """The `data` parameter could not be read in the format it claims."""


def render_rows(rows: Sequence[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None,
                *, root: str = "records", header: Sequence[str] | None = None) -> str:
    """A list of records (dicts) as REDCap writes it in json, csv or xml; `header`
    replaces the column names in a CSV's first line."""
    if fmt == "json":
        return json.dumps(list(rows), ensure_ascii=False)
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if cols:
            writer.writerow(list(header) if header is not None else cols)
        writer.writerows([[_text(r.get(c, "")) for c in cols] for r in rows])
        return out.getvalue()
    items = "".join(
        "<item>" + "".join(f"<{c}>{_cdata(r.get(c, ''))}</{c}>" for c in cols) + "</item>\n"
        for r in rows)
    return f"{XML_HEAD}\n<{root}>\n{items}</{root}>\n"


def render_object(obj: dict[str, Any], fmt: str, *, root: str) -> str:
    """One object (project info): json object, csv with one row, xml element per key."""
    if fmt == "json":
        return json.dumps(obj, ensure_ascii=False)
    if fmt == "csv":
        return render_rows([obj], "csv")
    inner = "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in obj.items())
    return f"{XML_HEAD}\n<{root}>{inner}</{root}>\n"


def render_error(message: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"error": message}, ensure_ascii=False)
    if fmt == "csv":
        return f"ERROR: {message}"
    return f"{XML_HEAD}\n<hash>\n  <error>{escape(message)}</error>\n</hash>"


def render_count(count: int, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"count": count})
    if fmt == "csv":
        return str(count)
    return f"{XML_HEAD}<count>{count}</count>"  # REDCap writes it on one line


def render_ids(ids: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(ids), ensure_ascii=False)
    if fmt == "csv":
        return "id\n" + "".join(f"{i}\n" for i in ids)
    return f"{XML_HEAD}<ids>" + "".join(f"<id>{escape(i)}</id>" for i in ids) + "</ids>"


def parse_rows(data: str, fmt: str) -> list[dict[str, str]]:
    """The `data` of an import as a list of string dicts (json array, csv table, xml items)."""
    if fmt == "json":
        return _json_rows(data)
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(data.lstrip("\ufeff")))
        if reader.fieldnames is None:
            return []
        return [{(k or "").strip(): _text(v) for k, v in row.items()} for row in reader]
    if fmt == "xml":
        root = parse_xml(data)
        return [{child.tag: (child.text or "") for child in item} for item in root.iter("item")]
    raise ImportFormatError(f"The format '{fmt}' is not valid")


def parse_xml(text: str) -> ET.Element:
    """Parse XML without DTDs (REDCap's files never have one; entities could be abused)."""
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ImportFormatError("The XML contains a DOCTYPE or ENTITY declaration")
    try:
        return ET.fromstring(text.strip().encode("utf-8"))  # noqa: S314
    except (ET.ParseError, LookupError, ValueError) as err:  # LookupError: a bogus encoding
        raise ImportFormatError(f"The XML could not be parsed: {err}") from None


def _json_rows(data: str) -> list[dict[str, str]]:
    try:
        parsed = json.loads(data)
    except json.JSONDecodeError as err:
        raise ImportFormatError(f"The data is not valid JSON: {err}") from None
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
        raise ImportFormatError("The JSON data must be an array of objects")
    return [{str(k): _text(v) for k, v in r.items()} for r in parsed]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cdata(value: Any) -> str:
    text = _text(value)
    if text == "":
        return ""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
