"""The common subset of REDCap's `filterLogic`: comparisons joined by `and` / `or`, with
parentheses, over `[field]`, `[field(code)]` (a checkbox choice) and `[event][field]`.

Anything else (functions, smart variables, arithmetic) raises `LogicError`, so the API
refuses the request rather than filtering wrongly. Pure: parsing and evaluation only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_TOKEN = re.compile(r"""\s*(?:
    (?P<ref>(?:\[[a-z0-9_]+\])?\[[a-z][a-z0-9_]*(?:\([^)\]]+\))?\])
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<word>and|or|AND|OR)\b
  | (?P<paren>[()])
)""", re.VERBOSE)
_REF = re.compile(r"(?:\[(?P<event>[a-z0-9_]+)\])?\[(?P<field>[a-z][a-z0-9_]*)(?:\((?P<code>[^)]+)\))?\]")


class LogicError(ValueError):
    """Logic outside the emulated subset, or malformed."""


@dataclass(frozen=True)
class Ref:
    event: str | None
    field: str
    code: str | None


# value lookup: (ref) -> stored value ("" when blank)
Lookup = Callable[[Ref], str]
Node = Callable[[Lookup], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise LogicError(f"cannot read the logic at: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


MAX_LENGTH = 4000


def parse(text: str) -> Node:
    if len(text) > MAX_LENGTH:
        raise LogicError(f"the logic is longer than {MAX_LENGTH} characters")
    tokens = _tokens(text)
    try:
        node, rest = _or(tokens)
    except RecursionError:
        raise LogicError("the logic nests parentheses too deeply") from None
    if rest:
        raise LogicError(f"unexpected {rest[0][1]!r}")
    return node


def _or(tokens: list[tuple[str, str]]) -> tuple[Node, list[tuple[str, str]]]:
    left, tokens = _and(tokens)
    while tokens and tokens[0][0] == "word" and tokens[0][1].lower() == "or":
        right, tokens = _and(tokens[1:])
        left = (lambda a, b: lambda look: a(look) or b(look))(left, right)
    return left, tokens


def _and(tokens: list[tuple[str, str]]) -> tuple[Node, list[tuple[str, str]]]:
    left, tokens = _factor(tokens)
    while tokens and tokens[0][0] == "word" and tokens[0][1].lower() == "and":
        right, tokens = _factor(tokens[1:])
        left = (lambda a, b: lambda look: a(look) and b(look))(left, right)
    return left, tokens


def _factor(tokens: list[tuple[str, str]]) -> tuple[Node, list[tuple[str, str]]]:
    if not tokens:
        raise LogicError("the logic ends too early")
    if tokens[0] == ("paren", "("):
        node, rest = _or(tokens[1:])
        if not rest or rest[0] != ("paren", ")"):
            raise LogicError("a parenthesis is not closed")
        return node, rest[1:]
    if len(tokens) < 3 or tokens[1][0] != "op":
        raise LogicError(f"expected a comparison at {tokens[0][1]!r}")
    left, op, right = _operand(tokens[0]), tokens[1][1], _operand(tokens[2])
    return (lambda look: _compare(left(look), op, right(look))), tokens[3:]


def _operand(token: tuple[str, str]) -> Callable[[Lookup], str]:
    kind, text = token
    if kind == "ref":
        m = _REF.fullmatch(text)
        assert m is not None
        ref = Ref(m.group("event"), m.group("field"), m.group("code"))
        return lambda look: look(ref)
    if kind == "str":
        return lambda look: text[1:-1]
    if kind == "num":
        return lambda look: text
    raise LogicError(f"{text!r} is not a field, a number or a quoted value")


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _compare(a: str, op: str, b: str) -> bool:
    x, y = _number(a), _number(b)
    left: float | str
    right: float | str
    left, right = (x, y) if x is not None and y is not None else (a, b)
    if op == "=":
        return left == right
    if op in ("<>", "!="):
        return left != right
    if a == "" or b == "":  # REDCap: a blank is never less or greater than a value
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right,  # type: ignore[operator]
            ">=": left >= right}[op]  # type: ignore[operator]


def references(text: str) -> list[Ref]:
    return [Ref(m.group("event"), m.group("field"), m.group("code"))
            for m in _REF.finditer(text)]
