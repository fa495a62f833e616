"""One OpenAPI document for the whole public API, served by the gateway at `/openapi.json`.

It joins the gateway's own routes with each service's routes as the gateway exposes them
(`/api/v1/<service>/…`, read from the service's own document inside the cluster), keeping
exactly the operations the permission table names. Each operation says who may call it
(roles, generated from the table), carries its security requirement, and documents the
edge's answers (401, 403, 429, 413, 415, 503…) as problem documents. A service that cannot
be reached is left out and named in `x-tailor-unavailable`; the document is then rebuilt
on the next request instead of being kept.
"""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.core.roles import PERMISSIONS, SERVICES, Credential, RoutePermission, find_rule
from services.core.survey_links import HEADER as SURVEY_LINK_HEADER

from .proxy import ServiceUnavailable
from .security import GatewayRuntime, runtime_of

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_FASTAPI_DOCS = frozenset({"openapi", "swagger_ui_html", "swagger_ui_redirect", "redoc_html"})
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object", "required": ["type", "title", "status", "detail"],
    "description": "RFC 9457 problem document: what went wrong, and the field at fault if any",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "field": {"type": "string"},
        "service": {"type": "string", "description": "the service that could not answer"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A Tailor API key (`tlr_…`, from `tailor keys create` or an admin) "
                              "or an access token from the site's identity provider (OIDC)."},
    "redcapSecret": {"type": "apiKey", "in": "query", "name": "secret",
                     "description": "The REDCap Data Entry Trigger secret; it opens that route only."},
    "surveyLinkSecret": {"type": "apiKey", "in": "header", "name": SURVEY_LINK_HEADER,
                         "description": "Tailor's notifications service only: opens the two "
                                        "internal survey-link routes and nothing else."},
}
EDGE_ANSWERS = {
    "401": "No valid API key or OIDC token",
    "403": "The caller's role may not call this route",
    "429": "Too many requests for this key; see Retry-After",
}
BODY_ANSWERS = {"400": "Malformed JSON", "413": "Body too large", "415": "Unsupported media type"}


def access_text(rule: RoutePermission) -> str:
    """Who may call the route, generated from its rule in the permission table."""
    if rule.credential is Credential.NONE:
        lines = ["**Access:** open, no credentials."]
    elif rule.credential is Credential.REDCAP_SECRET:
        lines = ["**Access:** the REDCap server only, with the Data Entry Trigger secret in the "
                 "URL; the secret grants nothing else."]
    elif rule.credential is Credential.SURVEY_LINK_SECRET:
        lines = ["**Access:** Tailor's notifications service only, with the survey-link secret "
                 "in `X-Tailor-Survey-Link-Secret`; every answer is recorded as a read of the "
                 "participant."]
    else:
        lines = ["**Roles:** " + ", ".join(f"`{r.value}`" for r in sorted(rule.roles)) + "."]
        if rule.participant_data:
            lines.append("Touches participant data: every call is recorded in the gateway's "
                         "audit trail (who, which participant, when, which route).")
        if rule.requires is not None:
            lines.append(f"Every allowed role holds the `{rule.requires.value}` capability.")
        if rule.together:
            lines.append("Takes effect only once every listed role has asked (two-person rule).")
    if rule.note:
        lines.append(f"Note: {rule.note}.")
    return "\n\n".join(lines)


def _renamed_refs(value: Any, rename: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _renamed_refs(v, rename) for k, v in value.items()}
        ref = out.get("$ref")
        prefix = "#/components/schemas/"
        if isinstance(ref, str) and ref.startswith(prefix) and ref[len(prefix):] in rename:
            out["$ref"] = prefix + rename[ref[len(prefix):]]
        return out
    if isinstance(value, list):
        return [_renamed_refs(v, rename) for v in value]
    return value


def _problem_answers(operation: dict[str, Any], rule: RoutePermission, *, proxied: bool) -> None:
    responses = operation.setdefault("responses", {})
    problem = {"application/problem+json": {"schema": PROBLEM_REF}}
    for code, answer in list(responses.items()):
        if code[:1] in ("4", "5"):  # the edge and the kernel answer every error this way
            responses[code] = {"description": answer.get("description", "Error"), "content": problem}
    extra = dict(EDGE_ANSWERS) if rule.credential is Credential.BEARER else {}
    if "requestBody" in operation:
        extra |= BODY_ANSWERS
    if proxied:
        extra["503"] = "The owning service is unavailable (named in `service`)"
    for code, text in extra.items():
        responses.setdefault(code, {"description": text, "content": problem})
    responses.setdefault("default", {"description": "Any other error", "content": problem})


def _decorated(operation: dict[str, Any], rule: RoutePermission, *, proxied: bool) -> dict[str, Any]:
    text = access_text(rule)
    operation["description"] = f"{operation.get('description', '').strip()}\n\n{text}".strip()
    operation["x-tailor-roles"] = sorted(r.value for r in rule.roles)
    operation["security"] = {Credential.BEARER: [{"bearer": []}],
                             Credential.REDCAP_SECRET: [{"redcapSecret": []}],
                             Credential.SURVEY_LINK_SECRET: [{"surveyLinkSecret": []}],
                             }.get(rule.credential, [])
    _problem_answers(operation, rule, proxied=proxied)
    return operation


def merge(document: dict[str, Any], source: dict[str, Any], *, service: str | None) -> None:
    """Add `source`'s operations that the table names, as the gateway exposes them."""
    prefix = f"/api/v1/{service}" if service else ""
    schemas = source.get("components", {}).get("schemas", {})
    rename = {name: f"{service}.{name}" for name in schemas} if service else {}
    for path, item in source.get("paths", {}).items():
        public = prefix + path
        for method, operation in item.items():
            rule = find_rule(method.upper(), public) if method in HTTP_METHODS else None
            if rule is None or rule.template != public:
                continue  # a process-internal route (probes, metrics, the kernel's audit API)
            op = _renamed_refs(copy.deepcopy(operation), rename)
            if service:
                op["operationId"] = f"{service}_{op.get('operationId', method + path)}"
                op["tags"] = [service]
            document["paths"].setdefault(public, {})[method] = _decorated(op, rule, proxied=bool(service))
    for name, schema in schemas.items():
        document["components"]["schemas"][rename.get(name, name)] = _renamed_refs(schema, rename)


def _own_extras(document: dict[str, Any]) -> None:
    """Routes FastAPI does not describe: the metrics text and this document itself."""
    plain = {"200": {"description": "Prometheus text format",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}}
    extras = {
        "/metrics": ("metrics", "Prometheus metrics of the gateway", plain),
        "/openapi.json": ("openapi", "This document", {"200": {
            "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}),
    }
    for path, (op_id, summary, responses) in extras.items():
        rule = find_rule("GET", path)
        if rule is not None:
            op = {"operationId": op_id, "summary": summary, "tags": ["operations"],
                  "responses": copy.deepcopy(responses)}
            document["paths"][path] = {"get": _decorated(op, rule, proxied=False)}


def _undescribed(document: dict[str, Any], services: list[str]) -> None:
    """Rules whose route the service serves but leaves out of its own document (an alias):
    described from the table alone, so that every public route is in the document."""
    for rule in PERMISSIONS:
        service = rule.template.split("/")[3] if rule.template.startswith("/api/v1/") else None
        method = rule.method.lower()
        if service not in services or method in document["paths"].get(rule.template, {}):
            continue
        parameters = [{"name": name.split(":")[0], "in": "path", "required": True,
                       "schema": {"type": "string"}}
                      for name in re.findall(r"\{([^}]+)\}", rule.template)]
        op = {"operationId": f"{service}_{method}_" + re.sub(r"\W+", "_", rule.template).strip("_"),
              "summary": rule.note or f"{rule.method} {rule.template}", "tags": [service],
              "parameters": parameters, "responses": {"200": {"description": "Success"}}}
        document["paths"].setdefault(rule.template, {})[method] = _decorated(op, rule, proxied=True)


async def _service_document(runtime: GatewayRuntime, service: str) -> dict[str, Any] | None:
    try:
        response = await runtime.proxy.send(service, "GET", "/openapi.json")
        return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]
    except (ServiceUnavailable, ValueError):
        return None


async def public_document(app: FastAPI, runtime: GatewayRuntime) -> dict[str, Any]:
    if runtime.openapi_cache is not None:
        return runtime.openapi_cache
    own = app.openapi()
    document: dict[str, Any] = {
        "openapi": own.get("openapi", "3.1.0"),
        "info": {"title": "Tailor public API", "version": own.get("info", {}).get("version", "0.1.0"),
                 "description": "Every route of Tailor reachable from outside, through the "
                                "gateway. Each operation names the roles that may call it."},
        "paths": {}, "components": {"schemas": {"Problem": PROBLEM_SCHEMA},
                                    "securitySchemes": SECURITY_SCHEMES},
    }
    merge(document, own, service=None)
    _own_extras(document)
    sources = await asyncio.gather(*(_service_document(runtime, s) for s in SERVICES))
    missing = [s for s, source in zip(SERVICES, sources, strict=True) if source is None]
    for service, source in zip(SERVICES, sources, strict=True):
        if source is not None:
            merge(document, source, service=service)
    _undescribed(document, [s for s in SERVICES if s not in missing])
    document["paths"] = dict(sorted(document["paths"].items()))
    if missing:
        document["x-tailor-unavailable"] = missing
    else:
        runtime.openapi_cache = document
    return document


def install(app: FastAPI) -> None:
    """Replace FastAPI's own document and browser pages with the public document."""
    app.router.routes[:] = [r for r in app.router.routes
                            if getattr(r, "name", None) not in _FASTAPI_DOCS]

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(await public_document(request.app, runtime_of(request)))

    app.add_api_route("/openapi.json", openapi, methods=["GET"], include_in_schema=False,
                      name="public_openapi")
