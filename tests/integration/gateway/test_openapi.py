"""One OpenAPI document for the public API: every route of the table, its roles in the
description, its security requirement; and schemathesis, run against it through the
gateway, finds no server error and no answer that breaks the document."""

from __future__ import annotations

import os
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from gateway.openapi import access_text
from services.core.roles import PERMISSIONS, Credential, find_rule

from .support import Edge, Trial

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def test_the_document_has_every_public_route_with_its_roles(edge: Edge) -> None:
    document = edge.call("GET", "/openapi.json").json()
    assert "x-tailor-unavailable" not in document
    assert set(document["components"]["securitySchemes"]) == {
        "bearer", "redcapSecret", "surveyLinkSecret"}
    operations = {(m.upper(), p): op for p, item in document["paths"].items()
                  for m, op in item.items() if m in HTTP_METHODS}
    assert set(operations) == {(r.method, r.template) for r in PERMISSIONS}
    for rule in PERMISSIONS:
        op = operations[(rule.method, rule.template)]
        assert access_text(rule) in op["description"]
        assert op["x-tailor-roles"] == sorted(r.value for r in rule.roles)
        expected = {Credential.BEARER: [{"bearer": []}], Credential.REDCAP_SECRET: [{"redcapSecret": []}],
                    Credential.SURVEY_LINK_SECRET: [{"surveyLinkSecret": []}],
                    Credential.NONE: []}[rule.credential]
        assert op["security"] == expected
        if rule.credential is Credential.BEARER:
            assert {"401", "403", "429"} <= set(op["responses"])
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids))


def test_roles_in_the_description_come_from_the_table(edge: Edge) -> None:
    document = edge.call("GET", "/openapi.json").json()
    verify = document["paths"]["/api/v1/audit/verify"]["get"]
    assert "**Roles:** `monitor`." in verify["description"]
    unblinded = document["paths"]["/api/v1/randomization/v1/allocations/unblinded"]["get"]
    assert "`dsmb`, `study_manager`" in unblinded["description"]
    assert "recorded in the gateway's audit trail" in unblinded["description"]


def _caller_headers(edge: Edge, method: str, path: str) -> dict[str, str]:
    rule = find_rule(method, path)
    assert rule is not None, (method, path)
    if rule.credential is not Credential.BEARER:
        return {}
    return edge.headers(sorted(rule.roles)[0])


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _fuzz(operation: schemathesis.APIOperation, base_url: str, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=int(os.environ.get("GW_FUZZ_EXAMPLES", "6")), deadline=None, database=None,
              derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()


def test_schemathesis_finds_no_server_error_and_no_schema_break(edge: Edge, trial: Trial) -> None:
    schema = schemathesis.openapi.from_dict(edge.call("GET", "/openapi.json").json())
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = _caller_headers(edge, operation.method.upper(), operation.path)
        try:
            _fuzz(operation, edge.gateway_url, headers)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis groups its failures
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:800]}")
        tested += 1
    if failures and os.environ.get("GW_FUZZ_REPORT"):
        Path(os.environ["GW_FUZZ_REPORT"]).write_text("\n\n".join(failures))
    assert failures == [], "\n\n".join(failures)
    assert tested == len(PERMISSIONS)
