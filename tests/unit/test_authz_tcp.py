"""AuthorizationPolicy on TLS passthrough: Envoy's RBAC *network* filter, as Istio builds it
(``BuildTCP``, ``forTCP``), checked by running described connections through the generated
filters (tests/unit/rbac_eval.py).

Istio's TCP rules: ``connection.sni``, ports, ``destination.ip``, ``ipBlocks`` / ``source.ip``,
``remoteIpBlocks`` / ``remote.ip`` keep their meaning; peer identities never match (the
sidecar→gateway hop of a PASSTHROUGH server carries the client's own TLS, no peer
certificate); ``hosts``, ``methods``, ``paths``, ``requestPrincipals``, ``request.headers`` and
``request.auth.*`` are HTTP only: an ALLOW rule using one is left out, a DENY or AUDIT rule keeps
only its other conditions."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from exitgate import ir
from exitgate.api import diagnostics as dx
from exitgate.api.loader import load_text
from exitgate.envoy import filters, resources
from exitgate.mesh import MeshConfig
from exitgate.translate.authz import gateway_rbac
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.snapshot import Snapshot
from tests.unit.rbac_eval import Request, Verdict, connection, evaluate

GW_NS = "istio-system"
GW_LABELS = {"istio": "egressgateway", "app": "istio-egressgateway"}
HTTPS = Path(__file__).resolve().parents[2] / "examples" / "egress-gateway-https"
CNN = connection("edition.cnn.com")
OTHER = connection("other.example")


def ap(action: str, spec: str, name: str = "test", dry_run: bool = False) -> str:
    annotations = '  annotations:\n    istio.io/dry-run: "true"\n' if dry_run else ""
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n"
            f"  namespace: {GW_NS}\n{annotations}spec:\n  action: {action}\n"
            f"{textwrap.indent(textwrap.dedent(spec).strip(), '  ')}\n")


def build(*docs: str) -> tuple[list[dict[str, Any]], list[dx.Diagnostic]]:
    loaded = load_text("---\n".join(docs), "test.yaml")
    assert not dx.has_errors(loaded.diagnostics), [str(d) for d in loaded.diagnostics]
    rbac, diags = gateway_rbac(loaded.resources, GW_NS, GW_LABELS, "istio-system", "cluster.local", tcp=True)
    return filters.network_rbac_filters(rbac), diags


def run(docs: list[str], conn: Request) -> Verdict:
    return evaluate(build(*docs)[0], conn)


def denied_by(v: Verdict) -> str | None:
    return None if v.allowed else v.policy


SNI_CNN = "rules:\n- when: [{key: connection.sni, values: [edition.cnn.com]}]"
P0 = "ns[istio-system]-policy[test]-rule[0]"


# (id, policies, [(connection, expected: True = allowed, or the policy name a refusal names)])
CASES: list[tuple[str, list[str], list[tuple[Request, bool | str]]]] = [
    ("allow-sni", [ap("ALLOW", SNI_CNN)], [(CNN, True), (OTHER, "none")]),
    ("allow-sni-suffix", [ap("ALLOW", "rules:\n- when: [{key: connection.sni, values: ['*.cnn.com']}]")],
     [(CNN, True), (OTHER, "none")]),
    ("allow-ports", [ap("ALLOW", "rules:\n- to: [{operation: {ports: ['8443']}}]")],
     [(CNN, True), (connection(destination_port=9443), "none")]),
    ("allow-destination-port", [ap("ALLOW", "rules:\n- when: [{key: destination.port, values: ['8443']}]")],
     [(CNN, True), (connection(destination_port=9443), "none")]),
    ("allow-ip-blocks", [ap("ALLOW", "rules:\n- from: [{source: {ipBlocks: [127.0.0.0/8]}}]")],
     [(CNN, True), (connection(source_ip="10.1.2.3"), "none")]),
    ("allow-remote-ip-blocks", [ap("ALLOW", "rules:\n- from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]")],
     [(connection(source_ip="10.1.2.3"), True), (CNN, "none")]),
    ("allow-destination-ip", [ap("ALLOW", "rules:\n- when: [{key: destination.ip, values: [127.0.0.1]}]")],
     [(CNN, True), (connection(destination_ip="127.0.0.2"), "none")]),
    # HTTP-only fields in ALLOW: the rule is left out, so nothing is allowed.
    ("allow-paths-only", [ap("ALLOW", "rules:\n- to: [{operation: {paths: [/politics]}}]")],
     [(CNN, "none"), (OTHER, "none")]),
    ("allow-paths-and-sni", [ap("ALLOW", "rules:\n- to: [{operation: {paths: [/politics]}}]\n"
                                         "  when: [{key: connection.sni, values: [edition.cnn.com]}]")],
     [(CNN, "none")]),
    ("allow-hosts", [ap("ALLOW", "rules:\n- to: [{operation: {hosts: [edition.cnn.com]}}]")], [(CNN, "none")]),
    ("allow-header-when", [ap("ALLOW", "rules:\n- when: [{key: 'request.headers[x-a]', values: [b]}]")],
     [(CNN, "none")]),
    # Only the dropped rule goes: another rule of the same policy still allows.
    ("allow-one-rule-dropped", [ap("ALLOW", "rules:\n- to: [{operation: {methods: [GET]}}]\n" + SNI_CNN[7:])],
     [(CNN, True), (OTHER, "none")]),
    # HTTP-only fields in DENY: ignored, the rest of the rule still applies (it matches more).
    ("deny-paths-and-sni", [ap("DENY", "rules:\n- to: [{operation: {paths: [/admin]}}]\n"
                                        "  when: [{key: connection.sni, values: [edition.cnn.com]}]")],
     [(CNN, P0), (OTHER, True)]),
    ("deny-paths-only", [ap("DENY", "rules:\n- to: [{operation: {paths: [/admin]}}]")],
     [(CNN, P0), (OTHER, P0)]),
    ("deny-methods-and-port", [ap("DENY", "rules:\n- to: [{operation: {methods: [POST], ports: ['8443']}}]")],
     [(CNN, P0), (connection(destination_port=9443), True)]),
    ("deny-not-paths-and-sni", [ap("DENY", "rules:\n- to: [{operation: {notPaths: [/public]}}]\n"
                                            "  when: [{key: connection.sni, values: [edition.cnn.com]}]")],
     [(CNN, P0), (OTHER, True)]),
    ("deny-header-when-and-sni", [ap("DENY", "rules:\n- when: [{key: 'request.headers[x-a]', values: [b]}, "
                                              "{key: connection.sni, values: [edition.cnn.com]}]")],
     [(CNN, P0), (OTHER, True)]),
    ("deny-sni", [ap("DENY", SNI_CNN)], [(CNN, P0), (OTHER, True)]),
    ("deny-not-sni", [ap("DENY", "rules:\n- when: [{key: connection.sni, notValues: [edition.cnn.com]}]")],
     [(CNN, True), (OTHER, P0)]),
    # Peer identities: a passthrough connection has no peer certificate.
    ("allow-principals-never-match", [ap("ALLOW", "rules:\n- from: [{source: {principals: ['*']}}]")],
     [(CNN, "none")]),
    ("allow-namespaces-never-match", [ap("ALLOW", "rules:\n- from: [{source: {namespaces: [default]}}]")],
     [(CNN, "none")]),
    ("allow-source-principal-never-matches",
     [ap("ALLOW", "rules:\n- when: [{key: source.principal, values: [cluster.local/ns/default/sa/sleep]}]")],
     [(CNN, "none")]),
    ("deny-principals-never-match", [ap("DENY", "rules:\n- from: [{source: {principals: ['*']}}]")],
     [(CNN, True)]),
    ("deny-not-principals-matches-all", [ap("DENY", "rules:\n- from: [{source: {notPrincipals: ['*']}}]")],
     [(CNN, P0)]),
    # Order: DENY before ALLOW; the first matching DENY policy (by name) is the one reported.
    ("deny-before-allow", [ap("DENY", SNI_CNN, name="no-cnn"),
                           ap("ALLOW", "rules:\n- when: [{key: connection.sni, values: ['*']}]", name="any")],
     [(CNN, "ns[istio-system]-policy[no-cnn]-rule[0]"), (OTHER, True)]),
    ("allow-is-or", [ap("ALLOW", SNI_CNN, name="cnn"),
                     ap("ALLOW", "rules:\n- when: [{key: connection.sni, values: [other.example]}]", name="other")],
     [(CNN, True), (OTHER, True), (connection("third.example"), "none")]),
    ("empty-allow-refuses", [ap("ALLOW", "")], [(CNN, "none")]),
    # AUDIT never refuses, even when an HTTP-only field made it match every connection.
    ("audit-does-not-deny", [ap("AUDIT", "rules:\n- to: [{operation: {paths: [/admin]}}]")],
     [(CNN, True), (OTHER, True)]),
    ("dry-run-deny-does-not-deny", [ap("DENY", SNI_CNN, dry_run=True)], [(CNN, True)]),
]


@pytest.mark.parametrize(("policies", "expect"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_connection_verdicts(policies: list[str], expect: list[tuple[Request, bool | str]]) -> None:
    for conn, want in expect:
        v = run(policies, conn)
        got: bool | str = True if v.allowed else (v.policy or "")
        assert got == want, (conn.sni, conn.destination_port, conn.source_ip, v)


def test_audit_logs_what_it_matched() -> None:
    v = run([ap("AUDIT", "rules:\n- to: [{operation: {paths: [/admin]}}]")], CNN)
    assert v.allowed and v.logged == (P0,)


def test_dry_run_is_counted_in_shadow_rules() -> None:
    v = run([ap("DENY", SNI_CNN, dry_run=True)], CNN)
    assert v.shadow == ((filters.SHADOW_DENY_PREFIX, P0, False),)


@pytest.mark.parametrize(("action", "effect"), [("ALLOW", "this ALLOW rule is left out"),
                                                ("DENY", "this DENY rule is applied without it"),
                                                ("AUDIT", "this AUDIT rule is applied without it")])
def test_http_only_fields_are_reported(action: str, effect: str) -> None:
    _, diags = build(ap(action, "rules:\n- to: [{operation: {hosts: [edition.cnn.com]}}]"))
    assert len(diags) == 1
    d = diags[0]
    assert d.code == dx.UNSUPPORTED and d.severity is dx.Severity.WARNING
    assert d.field == "spec.rules[0].to[0].operation.hosts"
    assert "'hosts' is HTTP only" in d.message and effect in d.message and "connection.sni" in d.message


def test_http_rbac_is_unchanged_by_the_tcp_flavour() -> None:
    """The same policy on an HTTP listener still checks the path (no diagnostic)."""
    loaded = load_text(ap("DENY", "rules:\n- to: [{operation: {paths: [/admin]}}]"), "t.yaml")
    rbac, diags = gateway_rbac(loaded.resources, GW_NS, GW_LABELS, "istio-system", "cluster.local")
    assert diags == []
    assert rbac[0].policies is not None and isinstance(rbac[0].policies[0].permissions[0], ir.MatchAll)
    assert isinstance(rbac[0].policies[0].permissions[0].items[0], ir.MatchOneOf)


def test_network_filter_shape() -> None:
    (f,), _ = build(ap("DENY", SNI_CNN))
    assert f["name"] == "envoy.filters.network.rbac"
    cfg = f["typed_config"]
    assert cfg["@type"] == "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
    assert cfg["stat_prefix"] == "tcp."  # Istio's RBACTCPFilterStatPrefix
    assert cfg["rules"]["action"] == "DENY"
    perm = cfg["rules"]["policies"][P0]["permissions"][0]
    assert perm == {"and_rules": {"rules": [{"or_rules": {"rules": [
        {"requested_server_name": {"exact": "edition.cnn.com"}}]}}]}}


def https_snapshot(*extra: str) -> Snapshot:
    docs = [(HTTPS / f).read_text() for f in ("01-serviceentry.yaml", "02-gateway-destinationrule-virtualservice.yaml")]
    loaded = load_text("---\n".join([*docs, *extra]), "case.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return Snapshot(loaded.resources, MeshConfig())


def test_passthrough_chain_puts_rbac_before_tcp_proxy() -> None:
    snap = https_snapshot(ap("AUDIT", SNI_CNN, name="audit"), ap("DENY", SNI_CNN, name="deny"),
                          ap("ALLOW", "rules:\n- {}", name="allow"))
    pc, diags = translate_gateway(snap, snap.mesh.gateways[0])
    assert diags == []
    (lst,) = pc.tls_passthrough_listeners
    assert [f.action for f in lst.rbac] == [ir.RbacAction.LOG, ir.RbacAction.DENY, ir.RbacAction.ALLOW]
    rendered = json_format.MessageToDict(resources.tls_passthrough_listener(lst), preserving_proto_field_name=True)
    (chain,) = rendered["filter_chains"]
    assert [f["name"] for f in chain["filters"]] == ["envoy.filters.network.rbac"] * 3 + [
        "envoy.filters.network.tcp_proxy"]
    assert evaluate(chain["filters"], CNN).policy == "ns[istio-system]-policy[deny]-rule[0]"


def test_passthrough_without_policies_has_no_rbac() -> None:
    snap = https_snapshot()
    pc, _ = translate_gateway(snap, snap.mesh.gateways[0])
    (lst,) = pc.tls_passthrough_listeners
    assert lst.rbac == ()
    rendered = json_format.MessageToDict(resources.tls_passthrough_listener(lst), preserving_proto_field_name=True)
    assert [f["name"] for f in rendered["filter_chains"][0]["filters"]] == ["envoy.filters.network.tcp_proxy"]


def test_envoy_validates_a_passthrough_listener_with_network_rbac(tmp_path: Path) -> None:
    from tests.golden.test_envoy_accepts import assert_envoy_accepts

    snap = https_snapshot(ap("DENY", "rules:\n- to: [{operation: {paths: [/admin]}}]\n"
                                     "  when: [{key: connection.sni, values: ['*.cnn.com']}]", name="deny"),
                          ap("ALLOW", "rules:\n- from: [{source: {ipBlocks: [127.0.0.1], remoteIpBlocks: [::1/128]}}]\n"
                                      "  to: [{operation: {ports: ['8443']}}]\n"
                                      "  when: [{key: destination.ip, values: [127.0.0.1]}]", name="allow"),
                          ap("DENY", SNI_CNN, name="shadow", dry_run=True),
                          ap("AUDIT", "rules:\n- from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]",
                             name="audit"))
    pc, _ = translate_gateway(snap, snap.mesh.gateways[0])
    assert pc.tls_passthrough_listeners and pc.tls_passthrough_listeners[0].rbac
    assert "envoy.filters.network.rbac" in assert_envoy_accepts(pc, tmp_path)
