"""Every `TAILOR_*` environment variable any Tailor process reads, from the settings classes
themselves (plus the few read directly): the table in deploy/README.md is generated from
here (`tailor settings table`), and a process refuses to start with a variable that is not
in it, so a misspelt setting is never silently ignored.

The CLI is the only package that may import every service, so the catalogue lives here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

from services.core.digests import env_name as digest_env
from services.core.sealing import RECIPIENTS
from services.core.sealing import env_name as sealing_env
from services.core.settings import (
    SERVICES,
    ServiceSettings,
    Settings,
    default_protocol_file,
    service_settings,
)


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str
    secret: bool = False
    files: bool = False  # not secret, but may come from a file too (`<NAME>_FILE`)


DIGEST_HOLDERS = ("gateway", "safety")  # the processes that load a digest key
# Read with os.environ rather than through a settings class.
DIRECT = (
    Variable("TAILOR_INTERNAL_TOKEN_PRIVATE_KEY", "embedded: `$TAILOR_HOME/keys`",
             "gateway only: Ed25519 PEM that signs internal tokens (`_FILE`: path)", True),
    Variable("TAILOR_INTERNAL_TOKEN_PUBLIC_KEY", "embedded: `$TAILOR_HOME/keys`",
             "services: the gateway's public key that verifies internal tokens (`_FILE`: path)",
             True),
    Variable("TAILOR_SURVEY_LINK_SECRET", "embedded: `$TAILOR_HOME/keys`",
             "gateway and notifications: the secret notifications shows the gateway for a "
             "participant's REDCap survey link (`_FILE`: path)", True),
    Variable("TAILOR_RANDOMIZATION_LIST_KEY", "embedded: `$TAILOR_HOME/keys`",
             "randomization: AES-256 key of the sealed lists, base64 (`_FILE`: path)", True),
    # Sealed bus payloads: each consumer's private key stays in its own pod; producers
    # (the gateway; allocation for randomization) hold the consumers' public keys.
    *(Variable(sealing_env(s, public=False), "embedded: `$TAILOR_HOME/keys`",
               f"{s} only: its X25519 PEM key that opens bus payloads sealed to it "
               "(`_FILE`: path)", True) for s in RECIPIENTS),
    *(Variable(sealing_env(s, public=True), "embedded: `$TAILOR_HOME/keys`",
               f"{'allocation' if s == 'randomization' else 'gateway'}: the public bus key of {s} "
               "(PEM), to seal payloads to it (`_FILE`: path)", files=True) for s in RECIPIENTS),
    # SMART only: each later stage's option is sealed to the gateway, which writes it back.
    Variable(sealing_env("gateway", public=False), "embedded: `$TAILOR_HOME/keys`",
             "gateway only, for a protocol with later stages (SMART): its X25519 PEM key that "
             "opens each stage's option (`_FILE`: path)", True),
    Variable(sealing_env("gateway", public=True), "embedded: `$TAILOR_HOME/keys`",
             "randomization, for a protocol with later stages: the gateway's public bus key "
             "(PEM), to seal each stage's option to it (`_FILE`: path)", files=True),
    *(Variable(digest_env(s), "embedded: `$TAILOR_HOME/keys`",
               f"{s} only: key of its digests of blinded data, base64 of 32 bytes "
               "(`_FILE`: path)", True) for s in DIGEST_HOLDERS),
    *(Variable(f"TAILOR_{s.upper()}_URL", "set by `tailor up`",
               f"where {s} listens (read by the gateway; safety and reports read the randomization URL)")
      for s in SERVICES if s != "gateway"),
    Variable("TAILOR_GATEWAY_URL", "set by `tailor up`",
             "where the gateway listens (`tailor up`; notifications asks it for survey links)"),
    Variable("TAILOR_NATS_PORT", "free port", "`tailor up`: port of the embedded nats-server"),
    *(Variable(f"TAILOR_{sim.upper()}_PORT", "free port", f"`tailor up`: port of the {sim} simulator")
      for sim in ("redcap", "smtp", "sms")),
)
# Families for the simulators and the test suite: never read by a service.
IGNORED_PREFIXES = ("TAILOR_SIM_", "TAILOR_TEST_")


def _settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    from gateway.console.settings import ConsoleSettings
    from gateway.redcap.settings import RedcapSettings
    from gateway.settings import GatewaySettings
    from services.notifications.runtime import NotificationSettings
    from services.reports.config import ReportsConfig
    from services.safety.config import SafetyConfig

    return [("TAILOR_", Settings),
            *((f"TAILOR_{s.upper()}_", ServiceSettings) for s in SERVICES),
            ("TAILOR_GATEWAY_", GatewaySettings), ("TAILOR_REDCAP_", RedcapSettings),
            ("TAILOR_CONSOLE_", ConsoleSettings), ("TAILOR_NOTIFICATIONS_", NotificationSettings),
            ("TAILOR_SAFETY_", SafetyConfig), ("TAILOR_REPORTS_", ReportsConfig)]


def _default(field: object) -> str:
    factory = getattr(field, "default_factory", None)
    if factory is default_protocol_file:
        return "`protocols/perpain-pilot.yaml` (outside a checkout: the copy installed with Tailor)"
    value = factory() if factory is not None else getattr(field, "default", None)
    if value is None or value == "" or value == [] or value == {}:
        return "none"
    return f"`{value}`"


def _type(annotation: object) -> str:
    return str(annotation).replace("typing.", "").replace("pathlib.", "").replace(
        "pydantic.types.", "").replace("<class '", "").replace("'>", "")


def catalogue() -> list[Variable]:
    """One row per variable, sorted by name; the first class that names a variable wins."""
    rows: dict[str, Variable] = {v.name: v for v in DIRECT}
    for prefix, cls in _settings_classes():
        for name, field in cls.model_fields.items():
            if cls is ServiceSettings and name == "name":
                continue
            alias = field.validation_alias
            names = ([str(c).upper() for c in alias.choices] if isinstance(alias, AliasChoices)
                     else [f"{prefix}{name}".upper()])
            # A database URL holds the role's password: a secret like the others.
            secret = "SecretStr" in _type(field.annotation) or name == "database_url"
            meaning = field.description or f"({_type(field.annotation)})"
            for variable in names:
                rows.setdefault(variable, Variable(variable, "none" if secret else _default(field),
                                                   meaning, secret))
    return sorted(rows.values(), key=lambda v: v.name)


def known_names(variables: Iterable[Variable] | None = None) -> frozenset[str]:
    rows = list(variables if variables is not None else catalogue())
    names = {v.name for v in rows}
    names |= {f"{v.name}_FILE" for v in rows if v.secret or v.files}  # secrets and keys as files
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str] = os.environ) -> list[str]:
    known = known_names()
    return sorted(k for k in environ if k.upper().startswith("TAILOR_")
                  and not k.upper().startswith(IGNORED_PREFIXES) and k.upper() not in known)


def load_secret_files(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Every secret may come from a mounted file: `TAILOR_X_FILE=/path` sets `TAILOR_X` to
    the file's content for this process (Kubernetes Secrets as files, never in the pod
    spec's environment). Returns a one-line problem naming the variable, or None."""
    for variable in catalogue():
        path = environ.get(f"{variable.name}_FILE")
        if not variable.secret or not path or environ.get(variable.name):
            continue
        try:
            environ[variable.name] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            return f"{variable.name}_FILE: cannot read {path} ({exc.strerror or exc})"
    return None


def settings_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """The first reason this environment cannot start a process, on one line naming the
    variable; None when every `TAILOR_*` variable is known and every value valid."""
    unknown = unknown_variables(environ)
    if unknown:
        return (f"{unknown[0]}: not a Tailor setting (misspelt?); `tailor settings` lists them"
                + (f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""))
    for prefix, cls in _settings_classes():
        try:
            if cls is ServiceSettings:
                service_settings(prefix.removeprefix("TAILOR_").rstrip("_").lower())
            else:
                cls()
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else ""
            return f"{prefix}{field.upper()}: {error['msg']}"
    return None


def markdown_table() -> str:
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    for v in catalogue():
        meaning = v.meaning.replace("|", "\\|") + (" **secret**" if v.secret else "")
        lines.append(f"| `{v.name}` | {meaning} | {v.default.replace('|', '/')} |")
    return "\n".join(lines)
