"""The Kubernetes deployment builds, validates against the API schemas, passes the policy
check, and says what production needs: each finding of the ops review has a check here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tailor_cli.settings_catalog import markdown_table, unknown_variables

from .conftest import K8S, ROOT, TARGETS, rendered, rendered_text, tool

pytestmark = pytest.mark.deploy
KUBERNETES_VERSION = "1.30.0"  # the oldest minor the deployment supports
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}  # CRDs: checked below
SERVICES = ("gateway", "allocation", "randomization", "notifications", "safety", "reports")
CONSUMERS = ("allocation", "randomization", "notifications", "safety", "reports")
# Image tags are set per release in the overlays; a site pins digests at deploy time
# (`kustomize edit set image tailor=…@sha256:…`), so "image should use digest" is skipped.
CHECKOV_SKIPS = ("CKV_K8S_43",)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(docs: list[dict], name: str) -> dict:
    workloads = by_kind(docs, "Deployment") | by_kind(docs, "StatefulSet") | by_kind(docs, "Job")
    return workloads[name]["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def config(docs: list[dict], prefix: str) -> dict[str, str]:
    [cm] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix)]
    return dict(cm["data"])


def secret_names(spec: dict) -> set[str]:
    return {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}


# ── builds ────────────────────────────────────────────────────────────────
def test_every_target_builds_with_the_default_load_restrictor(target: str) -> None:
    docs = rendered(target)
    kinds = sorted({d["kind"] for d in docs})
    print(f"{target}: {len(docs)} objects ({', '.join(kinds)})")
    assert len(docs) >= 30


def test_the_protocol_config_map_is_the_shipped_protocol() -> None:
    shipped = (ROOT / "protocols" / "perpain-pilot.yaml").read_bytes()
    assert (K8S / "base" / "protocol" / "perpain-pilot.yaml").read_bytes() == shipped, (
        "copy protocols/perpain-pilot.yaml to deploy/k8s/base/protocol/")
    [cm] = [d for d in rendered("base") if d["metadata"]["name"].startswith("tailor-protocol")]
    assert cm["data"]["perpain-pilot.yaml"].encode() == shipped


@pytest.mark.parametrize("target", TARGETS)
def test_schemas_are_valid(target: str) -> None:
    checked = 0
    for doc in rendered(target):
        if doc["kind"] in OPERATOR_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    print(f"{target}: {checked} objects valid against Kubernetes {KUBERNETES_VERSION} (strict)")


@pytest.mark.parametrize("overlay", ["overlays/staging", "overlays/production"])
def test_the_policy_check_finds_nothing(overlay: str, tmp_path: Path) -> None:
    checkov = tool("checkov", ROOT / ".tools" / "checkov" / "bin" / "checkov")
    (tmp_path / "rendered.yaml").write_text(rendered_text(overlay))
    done = subprocess.run([checkov, "-d", str(tmp_path), "--framework", "kubernetes", "--quiet",
                           "--compact", "-o", "json", "--skip-check", ",".join(CHECKOV_SKIPS)],
                          capture_output=True, text=True, timeout=600)
    summary = json.loads(done.stdout)["summary"] if done.stdout.strip().startswith("{") else None
    failed = [line for line in done.stdout.splitlines() if '"check_id"' in line]
    assert summary is not None, done.stdout[-2000:] + done.stderr[-2000:]
    print(f"checkov {overlay}: passed {summary['passed']}, failed {summary['failed']}")
    assert summary["failed"] == 0, failed


# ── who holds what ────────────────────────────────────────────────────────
@pytest.mark.parametrize("target", TARGETS)
def test_only_the_gateway_holds_the_internal_token_private_key(target: str) -> None:
    docs = rendered(target)
    holders = {name for name in SERVICES
               if "tailor-internal-token-private" in secret_names(pod_spec(docs, name))}
    assert holders == {"gateway"}
    for name in set(SERVICES) - {"gateway"}:
        [container] = pod_spec(docs, name)["containers"]
        assert "TAILOR_INTERNAL_TOKEN_PRIVATE_KEY_FILE" not in env_of(container)
        assert "tailor-internal-token-public" in secret_names(pod_spec(docs, name))


def test_redcap_is_wired_into_the_gateway_and_required_for_readiness() -> None:
    docs = rendered("overlays/production")
    spec = pod_spec(docs, "gateway")
    env = env_of(spec["containers"][0])
    assert "tailor-redcap" in secret_names(spec)
    assert env["TAILOR_REDCAP_TOKEN_FILE"] and env["TAILOR_REDCAP_DET_SECRET_FILE"]
    settings = config(docs, "tailor-gateway-settings")
    assert settings["TAILOR_REDCAP_REQUIRED"] == "true"
    assert settings["TAILOR_REDCAP_API_URL"].startswith("https://")


def test_notifications_has_its_contact_key_and_mail_and_sms_settings() -> None:
    docs = rendered("overlays/production")
    spec = pod_spec(docs, "notifications")
    env = env_of(spec["containers"][0])
    assert "tailor-notifications" in secret_names(spec)
    assert env["TAILOR_NOTIFICATIONS_CONTACT_KEY_FILE"]
    settings = config(docs, "tailor-notifications-settings")
    for key in ("SMTP_HOST", "SMTP_PORT", "SMTP_STARTTLS", "MAIL_FROM", "SMS_URL",
                "SMS_CALLBACK_URL"):
        assert settings[f"TAILOR_NOTIFICATIONS_{key}"], key


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_files_never_environment_values(target: str) -> None:
    text = rendered_text(target)
    assert "secretKeyRef" not in text


@pytest.mark.parametrize("target", TARGETS)
def test_every_tailor_variable_in_the_manifests_is_a_known_setting(target: str) -> None:
    docs = rendered(target)
    names: dict[str, str] = {}
    for d in docs:
        if d["kind"] == "ConfigMap":
            names |= {k: "" for k in d.get("data", {}) if k.startswith("TAILOR_")}
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            spec = d["spec"]["template"]["spec"]
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                names |= env_of(c)
    assert unknown_variables(names) == []


def test_safety_and_reports_are_given_the_randomization_url() -> None:
    for name in ("safety", "reports"):
        env = env_of(pod_spec(rendered("base"), name)["containers"][0])
        assert env["TAILOR_RANDOMIZATION_URL"] == "http://randomization:8000"
    assert config(rendered("base"), "tailor-gateway-settings")["TAILOR_REPORTS_URL"] == \
        "http://reports:8000"


def _mounted_secrets(spec: dict) -> set[str]:
    """Secrets a pod mounts, directly or through a projected volume."""
    found = secret_names(spec)
    for volume in spec.get("volumes", []):
        found |= {s["secret"]["name"] for s in volume.get("projected", {}).get("sources", [])
                  if "secret" in s}
    return found


def _key_file(env: dict[str, str], name: str, spec: dict) -> str:
    """The file `name` points at, checked to lie on a mounted volume."""
    path = env[name]
    [container] = spec["containers"]
    assert any(path.startswith(m["mountPath"] + "/") for m in container["volumeMounts"]), name
    return path


@pytest.mark.parametrize("target", TARGETS)
def test_each_bus_and_digest_key_is_only_where_it_is_used(target: str) -> None:
    """A consumer's private bus key only in its pod; the public keys with their producers
    (gateway: the four that read REDCap saves; allocation: randomization's); the digest
    keys in the gateway and safety. Each from its own Secret."""
    docs = rendered(target)
    producers = {"gateway": {"allocation", "notifications", "safety", "reports"},
                 "allocation": {"randomization"}}
    for name in SERVICES:
        spec = pod_spec(docs, name)
        env = env_of(spec["containers"][0])
        secrets = _mounted_secrets(spec)
        private = {c for c in CONSUMERS if f"tailor-{c}-bus-key" in secrets}
        assert private == ({name} if name in CONSUMERS else set()), name
        if name in CONSUMERS:
            _key_file(env, f"TAILOR_{name.upper()}_BUS_KEY_FILE", spec)
        public = {c for c in CONSUMERS if f"tailor-{c}-bus-public-key" in secrets}
        assert public == producers.get(name, set()), name
        for peer in public:
            _key_file(env, f"TAILOR_{peer.upper()}_BUS_PUBLIC_KEY_FILE", spec)
        digests = {s for s in SERVICES if f"tailor-{s}-digest-key" in secrets}
        assert digests == ({name} if name in ("gateway", "safety") else set()), name
        for holder in digests:
            _key_file(env, f"TAILOR_{holder.upper()}_DIGEST_KEY_FILE", spec)


@pytest.mark.parametrize("target", TARGETS)
def test_a_provisioning_job_alone_creates_streams_with_the_provisioner_seed(target: str) -> None:
    docs = rendered(target)
    [job] = by_kind(docs, "Job").values()
    spec = job["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["args"] == ["nats", "provision"]
    assert env_of(container)["TAILOR_NATS_CREDS_FILE"] == "/secrets/nats/tailor.nk"
    assert secret_names(spec) == {"tailor-nats-provisioner", "tailor-nats-ca"}
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # made anew by the next release's apply
    for name in SERVICES:  # the provisioner's seed is nowhere else
        assert "tailor-nats-provisioner" not in _mounted_secrets(pod_spec(docs, name))


# ── network ───────────────────────────────────────────────────────────────
def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
    return True


def allowed(docs: list[dict], *, source: dict[str, str] | None, source_namespace: str,
            target: str, port: int, namespace: str = "tailor") -> bool:
    """Would the NetworkPolicies let `source` (pod labels, or None for any pod of another
    namespace) reach `target`'s pods on `port`?"""
    labels = pod_labels(docs, target)
    policies = [p for p in docs if p["kind"] == "NetworkPolicy"
                and _selects(p["spec"]["podSelector"], labels)]
    assert policies, f"no policy selects {target}"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
                continue
            for peer in rule.get("from", []):
                ns = peer.get("namespaceSelector")
                pods = peer.get("podSelector")
                ns_ok = (_selects(ns, {"kubernetes.io/metadata.name": source_namespace})
                         if ns is not None else source_namespace == namespace)
                pod_ok = pods is None or (source is not None and _selects(pods, source))
                if ns_ok and pod_ok:
                    return True
    return False


def pod_labels(docs: list[dict], name: str) -> dict[str, str]:
    workloads = by_kind(docs, "Deployment") | by_kind(docs, "StatefulSet") | by_kind(docs, "Job")
    return dict(workloads[name]["spec"]["template"]["metadata"]["labels"])


def test_network_policies_allow_exactly_the_needed_paths() -> None:
    docs = rendered("overlays/production")
    pods = {name: pod_labels(docs, name) for name in (*SERVICES, "nats", "nats-provision")}

    def ok(source: str | None, target: str, port: int, ns: str = "tailor") -> bool:
        return allowed(docs, source=pods.get(source or ""), source_namespace=ns,
                       target=target, port=port)

    assert ok("safety", "randomization", 8000)  # the DSMB report's arms
    assert ok("reports", "randomization", 8000)  # per-arm figures for unblinded callers
    assert not ok("safety", "allocation", 8000)
    assert not ok("reports", "allocation", 8000)
    assert not ok("allocation", "randomization", 8000)
    assert ok("notifications", "gateway", 8000)  # reminders' survey links
    assert not ok("safety", "gateway", 8000)
    assert ok("nats-provision", "nats", 4222)
    for service in set(SERVICES) - {"gateway"}:
        assert ok("gateway", service, 8000)
        assert ok(None, service, 9100, ns="monitoring")
        assert not ok(None, service, 8000, ns="monitoring")
        assert ok(service, "nats", 4222)
    assert ok(None, "gateway", 8000, ns="ingress-nginx")
    assert not ok(None, "gateway", 8000, ns="elsewhere")
    assert ok(None, "nats", 7777, ns="monitoring")
    assert not ok(None, "nats", 4222, ns="elsewhere")


# ── edges and environments ────────────────────────────────────────────────
def test_staging_and_production_share_no_host_namespace_or_image() -> None:
    seen: dict[str, tuple[set[str], set[str], set[str]]] = {}
    for overlay in ("overlays/staging", "overlays/production"):
        docs = rendered(overlay)
        ingresses = by_kind(docs, "Ingress").values()
        for ingress in ingresses:
            assert ingress["spec"]["ingressClassName"]
            [tls] = ingress["spec"]["tls"]
            assert tls["secretName"] and tls["hosts"] == [r["host"] for r in ingress["spec"]["rules"]]
        hosts = {r["host"] for i in ingresses for r in i["spec"]["rules"]}
        images = {c["image"] for n in SERVICES for c in pod_spec(docs, n)["containers"]}
        namespaces = {d["metadata"].get("namespace", "") for d in docs}
        seen[overlay] = (hosts, images, namespaces)
    staging, production = seen["overlays/staging"], seen["overlays/production"]
    for a, b in zip(staging, production, strict=True):
        assert a and b and not (a & b)


def test_the_det_route_is_not_access_logged() -> None:
    ingresses = by_kind(rendered("overlays/production"), "Ingress")
    det = ingresses["tailor-redcap-det"]
    assert det["metadata"]["annotations"]["nginx.ingress.kubernetes.io/enable-access-log"] == "false"
    assert [p["path"] for r in det["spec"]["rules"] for p in r["http"]["paths"]] == ["/redcap/det"]


# ── NATS ──────────────────────────────────────────────────────────────────
def test_streams_have_three_replicas_on_the_three_node_cluster(target: str) -> None:
    docs = rendered(target)
    assert config(docs, "tailor-settings")["TAILOR_NATS_STREAM_REPLICAS"] == "3"
    assert by_kind(docs, "StatefulSet")["nats"]["spec"]["replicas"] == 3


def test_nats_pods_are_hardened_and_spread() -> None:
    docs = rendered("overlays/production")
    spec = pod_spec(docs, "nats")
    for c in spec["containers"]:
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["livenessProbe"] and c["readinessProbe"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    [rule] = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule["topologyKey"] == "kubernetes.io/hostname"
    assert by_kind(docs, "PodDisruptionBudget")["nats"]["spec"]["minAvailable"] == 2
    conf = config(docs, "nats-config")["nats.conf"]
    assert "tls {" in conf and "verify: true" in conf  # clients and routes
    assert "include ./auth/auth.conf" in conf
    assert {"tailor-nats-auth", "tailor-nats-tls"} <= secret_names(spec)
    for name in SERVICES:
        env = env_of(pod_spec(docs, name)["containers"][0])
        assert env["TAILOR_NATS_CREDS_FILE"] == f"/secrets/nats/{name}.nk"  # `tailor nats accounts`
        assert f"tailor-nats-{name}" in secret_names(pod_spec(docs, name))
    assert config(docs, "tailor-settings")["TAILOR_NATS_URL"].startswith("tls://")


# ── monitoring objects ────────────────────────────────────────────────────
@pytest.mark.parametrize("overlay", ["overlays/staging", "overlays/production"])
def test_monitors_scrape_ports_that_exist(overlay: str) -> None:
    docs = rendered(overlay)
    [monitor] = by_kind(docs, "ServiceMonitor").values()
    selected = [s for s in by_kind(docs, "Service").values()
                if _selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in selected} == set(SERVICES)
    for endpoint in monitor["spec"]["endpoints"]:
        for service in selected:
            assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    [pods] = by_kind(docs, "PodMonitor").values()
    ports = {p["name"] for c in pod_spec(docs, "nats")["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in pods["spec"]["podMetricsEndpoints"]} <= ports
    assert len(by_kind(docs, "PrometheusRule")) == 1
    config_map = config(docs, "tailor-settings")
    assert config_map["TAILOR_METRICS_PORT"] == "9100"


def test_base_has_no_yaml_anchors_or_tabs() -> None:
    for path in (K8S / "base").glob("*.yaml"):
        text = path.read_text()
        assert "&id" not in text and "\t" not in text, path
        list(yaml.safe_load_all(text))


def test_the_readme_settings_table_is_generated_from_the_code() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    table = readme.split("<!-- settings:begin -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert table == markdown_table(), (
        "deploy/README.md: replace the table between the settings markers with `tailor settings`")
