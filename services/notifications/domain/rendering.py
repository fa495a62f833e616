"""Message texts: jinja2 templates per kind and language, and the guard against leaks.

A message may carry a greeting, the timepoint, the survey link and whom to contact:
`MessageFacts` has no field for anything else, so clinical data cannot reach a template.
Every rendered text passes `ContentGuard`, which raises if it names a module, an arm or a
cluster label from the protocol. HTML templates (`*.html.j2`) are autoescaped; plain-text
ones are not (escaping would corrupt links and names in an SMS or a text e-mail).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import jinja2

from services.core.protocol import TrialProtocol
from services.core.protocol.notifications import DiaryPolicy, LocalizedText

from .errors import ForbiddenContent, NotificationError, TemplateMissing

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")


class MessageKind(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"          # call script for staff
    LETTER = "letter"        # print-ready HTML
    DIARY_PROMPT = "diary_prompt"


_BODY = {MessageKind.EMAIL: "email.txt.j2", MessageKind.SMS: "sms.txt.j2",
         MessageKind.PHONE: "phone.txt.j2", MessageKind.LETTER: "letter.html.j2",
         MessageKind.DIARY_PROMPT: "diary_prompt.txt.j2"}
_SUBJECT = {MessageKind.EMAIL: "email_subject.txt.j2"}


@dataclass(frozen=True)
class MessageFacts:
    """Everything a message may say, language-neutral."""

    timepoint: str | None = None          # key; None for diary prompts
    link: str | None = None
    greeting_name: str | None = None
    respond_by: date | None = None
    interview: bool = False               # the timepoint includes a telephone interview
    recipient_address: tuple[str, ...] = ()  # letters
    phone_number: str | None = None       # call scripts, shown to staff
    letter_date: date | None = None


@dataclass(frozen=True)
class RenderedMessage:
    kind: MessageKind
    language: str
    subject: str | None
    body: str
    media_type: str  # text/plain or text/html


def format_date(value: date, language: str) -> str:
    if language == "de":
        return f"{value.day:02d}.{value.month:02d}.{value.year}"
    if language == "en":
        return f"{value.day} {_MONTHS_EN[value.month - 1]} {value.year}"
    return value.isoformat()


@jinja2.pass_context
def _date_filter(ctx: jinja2.runtime.Context, value: date) -> str:
    return format_date(value, ctx["language"])


def prompt_link(policy: DiaryPolicy, token: str) -> str:
    if policy.prompt_link is None:
        raise NotificationError("the diary has no app link (diary.prompt_link)",
                                field="prompt_link")
    return policy.prompt_link.format(token=token)


class ContentGuard:
    """Refuses text that names any of `terms` (case-insensitive, whole words; spaces,
    hyphens and underscores inside a term are interchangeable)."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._patterns = []
        for term in sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True):
            words = [re.escape(w) for w in re.split(r"[\s_\-]+", term) if w]
            body = r"[\s_\-]+".join(words)
            self._patterns.append(
                (term, re.compile(rf"(?<![^\W_]){body}(?![^\W_])", re.IGNORECASE)))

    @classmethod
    def from_protocol(cls, protocol: TrialProtocol) -> ContentGuard:
        # Cluster keys are two-letter abbreviations ("ID", "AC") that occur in ordinary text;
        # their labels are specific enough to guard.
        terms = [m.key for m in protocol.modules] + [m.label for m in protocol.modules]
        terms += [a.key for a in protocol.arms] + [a.label for a in protocol.arms]
        terms += [c.label for c in protocol.clusters]
        return cls(terms)

    def check(self, kind: str, text: str) -> None:
        plain = html.unescape(text)
        for term, pattern in self._patterns:
            if pattern.search(plain):
                raise ForbiddenContent(kind, term)


class MessageRenderer:
    def __init__(self, protocol: TrialProtocol, template_dir: Path = TEMPLATES) -> None:
        self._settings = protocol.reminders.messages
        self._languages = list(protocol.reminders.languages)
        self._labels = {t.key: t.label for t in protocol.timepoints}
        self._guard = ContentGuard.from_protocol(protocol)
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(template_dir),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2", "html"), default_for_string=True, default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["date"] = _date_filter

    def _candidates(self, filename: str, language: str, timepoint: str | None) -> list[str]:
        names = [f"{language}/{timepoint}/{filename}"] if timepoint else []  # override
        return [*names, f"{language}/{filename}"]

    def _pick(self, kind: MessageKind, language: str, timepoint: str | None) -> str:
        """The language actually used: the wanted one if it has the template, else the first."""
        for lang in dict.fromkeys([language, self._languages[0]]):
            try:
                self._env.select_template(self._candidates(_BODY[kind], lang, timepoint))
            except jinja2.TemplatesNotFound:
                continue
            else:
                return lang
        raise TemplateMissing(
            f"no {kind} template for {language!r} nor {self._languages[0]!r}", field="language")

    def _local(self, text: LocalizedText, language: str) -> str:
        return text.get(language) or text.get(self._languages[0]) or next(iter(text.values()))

    def _variables(self, facts: MessageFacts, language: str) -> dict[str, Any]:
        s = self._settings
        label = None
        if facts.timepoint in s.timepoint_labels:
            label = self._local(s.timepoint_labels[facts.timepoint], language)
        elif facts.timepoint is not None:
            label = self._labels.get(facts.timepoint, facts.timepoint)
        return {
            "language": language,
            "study_name": self._local(s.study_name, language),
            "contact": {"name": self._local(s.contact.name, language), "phone": s.contact.phone,
                        "email": s.contact.email, "address": list(s.contact.address)},
            "greeting_name": facts.greeting_name,
            "timepoint_label": label,
            "interview": facts.interview,
            "link": facts.link,
            "respond_by": facts.respond_by,
            "recipient_address": list(facts.recipient_address),
            "phone_number": facts.phone_number,
            "letter_date": facts.letter_date,
        }

    def render(self, kind: MessageKind | str, language: str, facts: MessageFacts
               ) -> RenderedMessage:
        kind = MessageKind(kind)
        lang = self._pick(kind, language, facts.timepoint)
        variables = self._variables(facts, lang)

        def run(filename: str) -> str:
            names = self._candidates(filename, lang, facts.timepoint)
            try:
                text = self._env.select_template(names).render(variables).strip()
            except jinja2.UndefinedError as err:
                raise NotificationError(f"{kind} template: {err.message}",
                                        field="template") from None
            self._guard.check(kind.value, text)
            return text

        subject = run(_SUBJECT[kind]) if kind in _SUBJECT else None
        body = run(_BODY[kind]) + "\n"
        media = "text/html" if _BODY[kind].endswith(".html.j2") else "text/plain"
        return RenderedMessage(kind, lang, subject, body, media)

    @property
    def languages(self) -> Sequence[str]:
        return tuple(self._languages)
