"""The text of a message at send time, from its row and the participant's sealed contact.

Participant messages go through `domain.MessageRenderer` (greeting, timepoint, link,
study contact; checked against module, arm and cluster names). A reminder's link is the
participant's REDCap survey link, asked of the gateway here, at send time
(`survey_links.py`; `SurveyLinkUnavailable` puts the reminder back for a retry); so is a
diary prompt's, its own instance of the diary survey, unless the protocol names an app. Safety notices to the
protocol's contacts use their own template and the same content guard.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import jinja2
from sqlmodel import Session

from services.core.protocol import TrialProtocol

from .. import repository
from ..addresses import single_address
from ..crypto import ContactDetails
from ..domain import (
    ContentGuard,
    MessageFacts,
    MessageKind,
    NotificationError,
    RenderedMessage,
    prompt_link,
)
from ..domain.diary_weeks import diary_prompt_ref
from ..domain.rendering import TEMPLATES
from ..models import Message
from ..runtime import Runtime
from ..survey_links import diary_link, survey_link
from .channels import Outgoing


def _language(rt: Runtime, details: ContactDetails | None) -> str:
    return (details.language if details and details.language
            else rt.protocol.reminders.languages[0])


def timepoint_facts(session: Session, rt: Runtime, record: str, timepoint: str,
                    **extra: object) -> MessageFacts:
    tp = rt.protocol.timepoint_by_key[timepoint]
    row = repository.timepoint(session, record, timepoint)
    link = survey_link(rt, record, tp)
    return MessageFacts(timepoint=timepoint, link=link,
                        respond_by=row.last_day if row else None,
                        interview="interview" in tp.mode, **extra)  # type: ignore[arg-type]


def render_task(session: Session, rt: Runtime, msg: Message, details: ContactDetails | None,
                today: date) -> RenderedMessage:
    """A call script (phone) or a print-ready letter (letter) for staff."""
    assert msg.timepoint is not None
    if msg.channel == "phone":
        facts = timepoint_facts(session, rt, msg.record, msg.timepoint,
                                phone_number=details.mobile if details else None)
        return rt.renderer.render(MessageKind.PHONE, _language(rt, details), facts)
    facts = timepoint_facts(session, rt, msg.record, msg.timepoint, letter_date=today,
                            recipient_address=details.address if details else ())
    return rt.renderer.render(MessageKind.LETTER, _language(rt, details), facts)


def _prompt_link(rt: Runtime, msg: Message) -> str:
    """An app of the trial's own (`diary.prompt_link`), else the prompt's own instance of
    the REDCap diary survey."""
    policy = rt.protocol.diary_policy
    if policy.prompt_link is not None:
        return prompt_link(policy, rt.cipher.link_token("prompt", msg.key))
    day, index = diary_prompt_ref(msg.ref or "")
    return diary_link(rt, msg.record, day, index)


def compose(session: Session, rt: Runtime, msg: Message,
            details: ContactDetails | None) -> Outgoing:
    """The e-mail or SMS for `msg`; NotificationError if it cannot be written."""
    if msg.kind == "safety_notice":
        return safety_notice(rt, msg)
    if msg.kind == "staff_alert":
        return staff_alert(rt, msg)
    if details is None:
        raise NotificationError("no contact details on file", field="contact")
    to = single_address(details.email) if msg.channel == "email" else details.mobile
    if not to:  # (details sealed before addresses were checked may hold several: none)
        raise NotificationError(f"no {msg.channel} contact on file", field="contact")
    language = _language(rt, details)
    if msg.kind == "diary_prompt":
        link = _prompt_link(rt, msg)
        rendered = rt.renderer.render(MessageKind.DIARY_PROMPT, language,
                                      MessageFacts(link=link))
        names = rt.protocol.reminders.messages.study_name
        subject = names.get(language) or next(iter(names.values()))
        return Outgoing(msg.key, msg.channel, to, subject, rendered.body)
    assert msg.timepoint is not None
    kind = MessageKind.EMAIL if msg.channel == "email" else MessageKind.SMS
    rendered = rt.renderer.render(kind, language,
                                  timepoint_facts(session, rt, msg.record, msg.timepoint))
    return Outgoing(msg.key, msg.channel, to, rendered.subject, rendered.body)


class SafetyNotices:
    """Renders the notice to a safety contact; refuses text naming a module, arm or cluster."""

    def __init__(self, protocol: TrialProtocol) -> None:
        self._protocol = protocol
        self._guard = ContentGuard.from_protocol(protocol)
        self._env = jinja2.Environment(  # plain text: escaping would corrupt it
            loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
            trim_blocks=True, lstrip_blocks=True)

    def render(self, msg: Message) -> Outgoing:
        facts = json.loads(msg.facts or "{}")
        contact = next((c for c in self._protocol.safety.contacts if c.role == msg.recipient),
                       None)
        if contact is None:
            raise NotificationError(f"{msg.recipient!r} is not in safety.contacts",
                                    field="recipient")
        rules = {r.key: r for r in self._protocol.safety.rules}
        rule = rules.get(facts.get("rule", ""))
        deadline = datetime.fromisoformat(facts["deadline"]).strftime("%Y-%m-%d %H:%M UTC")
        variables = {
            "study_name": self._protocol.reminders.messages.study_name.get("en")
            or next(iter(self._protocol.reminders.messages.study_name.values())),
            "stage": facts.get("stage", "opened"), "rule": facts.get("rule", ""),
            "rule_description": rule.description if rule else None,
            "case_id": facts.get("case_id", ""), "record": msg.record, "deadline": deadline,
            "obligation_id": (msg.ref or "").split(":")[0], "recipient_name": contact.name,
        }
        subject = self._env.get_template("safety_notice_subject.txt.j2").render(variables)
        body = self._env.get_template("safety_notice.txt.j2").render(variables)
        for text in (subject, body):
            self._guard.check("safety_notice", text)
        return Outgoing(msg.key, "email", contact.email, subject.strip(), body.strip() + "\n")


def safety_notice(rt: Runtime, msg: Message) -> Outgoing:
    return rt.safety_notices.render(msg)


def staff_alert(rt: Runtime, msg: Message) -> Outgoing:
    """The e-mail to a trial-team contact that goes with a follow-up (plain text)."""
    facts = json.loads(msg.facts or "{}")
    contact = next((c for c in rt.protocol.trial.contacts if c.role == msg.recipient), None)
    if contact is None:
        raise NotificationError(f"{msg.recipient!r} is not in trial.contacts", field="recipient")
    study = rt.protocol.reminders.messages.study_name
    name = study.get("en") or next(iter(study.values()))
    subject = f"[{name}] Follow-up: {str(facts.get('kind', '')).replace('_', ' ')}"
    body = (f"To: {contact.name}\n\n{facts.get('summary', '')}\n\n"
            "Open the follow-ups in Tailor (notifications: follow-ups) and resolve it there.\n"
            "This e-mail carries no treatment allocation; do not reply with clinical details.\n")
    for text in (subject, body):
        rt.alert_guard.check("staff_alert", text)
    return Outgoing(msg.key, "email", contact.email, subject, body)
