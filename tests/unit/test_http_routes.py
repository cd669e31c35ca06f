"""VirtualService HTTP traffic features as Istio translates them (route.go, retry.go): behaviour on
the translated IR and on the Envoy route protos, the EG0006 reports for what stays unsupported,
and Envoy's own ``--mode validate`` of a bootstrap with every feature and the fault filter."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

from google.protobuf import json_format

from exitgate import ir
from exitgate.api import diagnostics as dx
from exitgate.api.loader import load_text
from exitgate.envoy import filters
from exitgate.envoy.routes import route_config
from exitgate.mesh import load_mesh
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.route_features import DEFAULT_RETRY, DEFAULT_RETRY_ON
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot

from tests.golden.test_envoy_accepts import assert_envoy_accepts

SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  ports: [{name: http, number: 80, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sink}
spec:
  hosts: [sink.example.com]
  ports: [{name: http, number: 80, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [httpbin.org]}]
"""


def vs(http: str, gateways: str = "[mesh]") -> str:
    return SE + "---\n" + textwrap.dedent(f"""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: httpbin}}
        spec:
          hosts: [httpbin.org]
          gateways: {gateways}
          http:
        """) + textwrap.indent(textwrap.dedent(http), "  ")


def _snapshot(text: str) -> Snapshot:
    loaded = load_text(text, "vs.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    mesh, diags = load_mesh(None)
    assert mesh is not None, diags
    return Snapshot(loaded.resources, mesh)


def sidecar(text: str) -> ir.ProxyConfig:
    snap = _snapshot(text)
    return translate_sidecar(snap, snap.mesh.workloads[0], 15001)[0]


def gateway(text: str) -> ir.ProxyConfig:
    snap = _snapshot(text)
    return translate_gateway(snap, snap.mesh.gateways[0])[0]


def routes(pc: ir.ProxyConfig, vhost: str = "httpbin.org:80") -> list[ir.Route]:
    return [r for rc in pc.route_configs for v in rc.virtual_hosts if v.name == vhost for r in v.routes]


def envoy_routes(pc: ir.ProxyConfig, vhost: str = "httpbin.org:80") -> list[dict]:
    out = []
    for rc in pc.route_configs:
        d = json_format.MessageToDict(route_config(rc), preserving_proto_field_name=True)
        out += [r for v in d["virtual_hosts"] if v["name"] == vhost for r in v["routes"]]
    return out


TO_HTTPBIN = "route: [{destination: {host: httpbin.org}}]"


# --- retries and timeout ----------------------------------------------------------------------------

def test_unset_retries_get_istios_default_policy_and_no_timeout() -> None:
    (r,) = envoy_routes(sidecar(vs(f"- {TO_HTTPBIN}\n")))
    assert r["route"]["timeout"] == "0s"
    assert r["route"]["retry_policy"] == {
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "host_selection_retry_max_attempts": "5",
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
    }
    # Istio >= 1.24: no retriable status codes by default (503 is not retried).
    assert "retriable_status_codes" not in r["route"]["retry_policy"]


def test_attempts_zero_disables_retries() -> None:
    (r,) = routes(sidecar(vs(f"- retries: {{attempts: 0}}\n  {TO_HTTPBIN}\n")))
    assert r.retry is None
    assert "retry_policy" not in envoy_routes(sidecar(vs(f"- retries: {{attempts: 0}}\n  {TO_HTTPBIN}\n")))[0]["route"]


def test_explicit_retries_split_status_codes_from_retry_on() -> None:
    pc = sidecar(vs(f"""\
        - timeout: 3s
          retries: {{attempts: 4, perTryTimeout: 500ms, retryOn: "5xx,503,429", retryRemoteLocalities: true,
                    retryIgnorePreviousHosts: false, backoff: 25ms}}
          {TO_HTTPBIN}
        """))
    (r,) = routes(pc)
    assert r.timeout_s == 3.0
    assert r.retry == ir.RetryPolicy(attempts=4, retry_on="5xx,retriable-status-codes", retriable_status_codes=(503, 429),
                                     per_try_timeout_s=0.5, previous_hosts=False, remote_localities=True, backoff_s=0.025)
    action = envoy_routes(pc)[0]["route"]
    assert action["timeout"] == "3s"
    policy = action["retry_policy"]
    assert policy["per_try_timeout"] == "0.500s" and policy["retry_back_off"] == {"base_interval": "0.025s"}
    assert policy["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities"
    assert "retry_host_predicate" not in policy


def test_retry_on_without_codes_keeps_it_verbatim() -> None:
    (r,) = routes(sidecar(vs(f"- retries: {{attempts: 1, retryOn: gateway-error}}\n  {TO_HTTPBIN}\n")))
    assert r.retry is not None and r.retry.retry_on == "gateway-error" and r.retry.previous_hosts


def test_retries_without_retry_on_use_the_default_conditions() -> None:
    (r,) = routes(sidecar(vs(f"- retries: {{attempts: 5}}\n  {TO_HTTPBIN}\n")))
    assert r.retry == replace(DEFAULT_RETRY, attempts=5) and r.retry.retry_on == DEFAULT_RETRY_ON


# --- matches ------------------------------------------------------------------------------------

def test_matches_are_ored_into_routes_and_fields_within_one_anded() -> None:
    pc = sidecar(vs(f"""\
        - name: r
          match:
          - name: a
            uri: {{regex: "^/delay/[0-9]+$"}}
            ignoreUriCase: true
            method: {{exact: GET}}
            headers: {{x-b: {{prefix: v}}, x-a: {{}}}}
            withoutHeaders: {{x-c: {{exact: "no"}}, x-d: {{}}}}
          - name: b
            queryParams: {{q: {{regex: "^[0-9]+$"}}, flag: {{}}}}
            authority: {{exact: httpbin.org}}
          {TO_HTTPBIN}
        """))
    a, b = envoy_routes(pc)
    assert (a["name"], b["name"]) == ("r.a", "r.b")
    assert a["match"]["safe_regex"] == {"regex": "^/delay/[0-9]+$"} and a["match"]["case_sensitive"] is False
    assert a["match"]["headers"] == [
        {"name": "x-a", "present_match": True},
        {"name": "x-b", "string_match": {"prefix": "v"}},
        {"name": "x-c", "string_match": {"exact": "no"}, "invert_match": True, "treat_missing_header_as_empty": True},
        {"name": "x-d", "present_match": True, "invert_match": True},
        {"name": ":method", "string_match": {"exact": "GET"}},
    ]
    assert b["match"]["prefix"] == "/" and "case_sensitive" not in b["match"]
    assert b["match"]["headers"] == [{"name": ":authority", "string_match": {"exact": "httpbin.org"}}]
    assert b["match"]["query_parameters"] == [{"name": "q", "string_match": {"safe_regex": {"regex": "^[0-9]+$"}}},
                                              {"name": "flag", "present_match": True}]


def test_exact_and_prefix_paths_and_stat_prefix() -> None:
    pc = sidecar(vs(f"""\
        - match: [{{uri: {{exact: /a}}, statPrefix: exact_a}}, {{uri: {{prefix: /b/}}}}]
          {TO_HTTPBIN}
        """))
    a, b = envoy_routes(pc)
    assert a["match"] == {"path": "/a"} and a["stat_prefix"] == "exact_a"
    assert b["match"] == {"prefix": "/b/"}


# --- fault --------------------------------------------------------------------------------------

def test_fault_is_a_per_route_filter_config() -> None:
    pc = sidecar(vs(f"""\
        - fault:
            delay: {{fixedDelay: 5s, percentage: {{value: 12.5}}}}
            abort: {{httpStatus: 418, percentage: {{value: 100}}}}
          {TO_HTTPBIN}
        """))
    (r,) = routes(pc)
    assert r.fault == ir.FaultInjection(5.0, 12.5, 418, None, 100.0)
    cfg = envoy_routes(pc)[0]["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert cfg == {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                   "delay": {"fixed_delay": "5s", "percentage": {"numerator": 125000, "denominator": "MILLION"}},
                   "abort": {"http_status": 418, "percentage": {"numerator": 1000000, "denominator": "MILLION"}}}


def test_fault_deprecated_percent_and_grpc_abort() -> None:
    (r,) = routes(sidecar(vs(f"""\
        - fault:
            delay: {{fixedDelay: 1s, percent: 30}}
            abort: {{grpcStatus: UNAVAILABLE}}
          {TO_HTTPBIN}
        """)))
    # An abort without percentage aborts nothing (Istio's API), as Envoy does with none given.
    assert r.fault == ir.FaultInjection(1.0, 30.0, None, 14, 0.0)


def test_fault_filter_runs_after_rbac_and_before_the_router_only_when_asked() -> None:
    rbac = (ir.RbacFilter(ir.RbacAction.DENY, ()),)
    plain = ir.HttpListener("l", "127.0.0.1", 8080, "r", "s", rbac=rbac, dynamic_forward_proxy=True)
    assert [f["name"] for f in filters.http_filters(plain)] == [
        "envoy.filters.http.rbac", "envoy.filters.http.dynamic_forward_proxy", "envoy.filters.http.router"]
    faulty = replace(plain, fault_injection=True)
    assert [f["name"] for f in filters.http_filters(faulty)] == [
        "envoy.filters.http.rbac", "envoy.filters.http.fault", "envoy.filters.http.dynamic_forward_proxy",
        "envoy.filters.http.router"]


# --- headers, rewrite, redirect, direct response, mirror ------------------------------------------

def test_header_operations_set_overwrites_add_appends_and_authority_rewrites() -> None:
    pc = gateway(vs("""\
        - headers:
            request: {set: {x-b: "1", ":authority": set.example}, add: {x-a: "2"}, remove: [x-r]}
            response: {set: {x-s: "3"}, remove: [server]}
          route:
          - destination: {host: httpbin.org}
            headers: {request: {add: {x-dest: "4"}}}
        """, gateways="[istio-system/egress]"))
    (r,) = envoy_routes(pc)
    assert r["request_headers_to_add"] == [
        {"header": {"key": "x-b", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-a", "value": "2"}},  # APPEND_IF_EXISTS_OR_ADD, the proto default
        {"header": {"key": "x-dest", "value": "4"}},
    ]
    assert r["request_headers_to_remove"] == ["x-r"]
    assert r["response_headers_to_add"] == [{"header": {"key": "x-s", "value": "3"},
                                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    assert r["response_headers_to_remove"] == ["server"]
    # The authority is rewritten by its header operation (once: Istio refuses a second one).
    assert r["route"]["host_rewrite_literal"] == "set.example"


def test_rewrite_prefix_regex_and_authority() -> None:
    pc = sidecar(vs(f"""\
        - match: [{{uri: {{prefix: /a/}}}}]
          rewrite: {{uri: /b/, authority: other.example}}
          {TO_HTTPBIN}
        - rewrite: {{uriRegexRewrite: {{match: "^/x/(.*)$", rewrite: "/y/\\\\1"}}}}
          {TO_HTTPBIN}
        """))
    a, b = envoy_routes(pc)
    assert a["route"]["prefix_rewrite"] == "/b/" and a["route"]["host_rewrite_literal"] == "other.example"
    assert b["route"]["regex_rewrite"] == {"pattern": {"regex": "^/x/(.*)$"}, "substitution": "/y/\\1"}


def test_redirect_drops_default_ports_and_maps_the_code() -> None:
    pc = sidecar(vs("""\
        - match: [{uri: {exact: /a}}]
          redirect: {uri: /b, authority: new.example, port: 443, scheme: https, redirectCode: 302}
        - match: [{uri: {exact: /c}}]
          redirect: {uri: /d, derivePort: FROM_REQUEST_PORT}
        - redirect: {authority: x.example, port: 8443}
        """))
    a, c, rest = envoy_routes(pc)
    assert a["redirect"] == {"path_redirect": "/b", "host_redirect": "new.example", "scheme_redirect": "https",
                             "response_code": "FOUND"}
    assert c["redirect"] == {"path_redirect": "/d"}  # port 80 with http: left out; 301 is the proto default
    assert rest["redirect"] == {"host_redirect": "x.example", "port_redirect": 8443}
    assert "route" not in a and "retry_policy" not in str(a)


def test_direct_response_string_and_bytes() -> None:
    pc = sidecar(vs("""\
        - match: [{uri: {exact: /s}}]
          directResponse: {status: 418, body: {string: teapot}}
        - directResponse: {status: 204}
        """))
    s, empty = envoy_routes(pc)
    assert s["direct_response"] == {"status": 418, "body": {"inline_string": "teapot"}}
    assert empty["direct_response"] == {"status": 204}
    (b,) = envoy_routes(sidecar(vs("- directResponse: {status: 200, body: {bytes: aGk=}}\n")))
    assert b["direct_response"]["body"] == {"inline_bytes": "aGk="}


def test_mirrors_default_to_all_requests_and_zero_means_none() -> None:
    pc = sidecar(vs(f"""\
        - mirror: {{host: sink.example.com}}
          mirrors:
          - destination: {{host: sink.example.com}}
            percentage: {{value: 0}}
          - destination: {{host: sink.example.com, port: {{number: 80}}}}
            percentage: {{value: 0.5}}
          {TO_HTTPBIN}
        """))
    (r,) = routes(pc)
    assert r.mirrors == (ir.Mirror("outbound|80||sink.example.com", 100.0), ir.Mirror("outbound|80||sink.example.com", 0.5))
    policies = envoy_routes(pc)[0]["route"]["request_mirror_policies"]
    assert [p["runtime_fraction"]["default_value"]["numerator"] for p in policies] == [1000000, 5000]


# --- what stays unsupported is reported -------------------------------------------------------------

def _unsupported(text: str) -> list[str]:
    return [d.field or "" for d in load_text(text, "vs.yaml").diagnostics if d.code == dx.UNSUPPORTED]


def test_unsupported_fields_stay_reported() -> None:
    assert _unsupported(vs(f"- corsPolicy: {{allowMethods: [GET]}}\n  {TO_HTTPBIN}\n")) == ["spec.http[0].corsPolicy"]
    assert _unsupported(vs(f"- match: [{{sourceLabels: {{app: a}}}}]\n  {TO_HTTPBIN}\n")) == [
        "spec.http[0].match[0].sourceLabels"]
    assert _unsupported(vs(f"- match: [{{sourceNamespace: default}}]\n  {TO_HTTPBIN}\n")) == [
        "spec.http[0].match[0].sourceNamespace"]
    # (JWT claims are matched at gateways only: at the mesh they are invalid, EG0005, not EG0006.)
    claims = vs(f"- match: [{{headers: {{'@request.auth.claims.group': {{exact: a}}}}}}]\n  {TO_HTTPBIN}\n",
                gateways="[istio-system/egress]")
    assert _unsupported(claims) == ["spec.http[0].match[0].headers.@request.auth.claims.group"]
    weighted = vs("""\
        - route:
          - {destination: {host: httpbin.org}, weight: 50, headers: {request: {set: {x: "1"}}}}
          - {destination: {host: sink.example.com}, weight: 50}
        """)
    assert _unsupported(weighted) == ["spec.http[0].route[0].headers"]
    assert _unsupported(vs(f"- fault: {{abort: {{grpcStatus: NOPE}}}}\n  {TO_HTTPBIN}\n")) == [
        "spec.http[0].fault.abort.grpcStatus"]
    assert _unsupported(vs("- redirect: {uri: /x, redirectCode: 305}\n")) == ["spec.http[0].redirect.redirectCode"]


def test_supported_features_are_not_reported() -> None:
    text = vs(f"""\
        - match: [{{uri: {{regex: "^/a$"}}, method: {{exact: GET}}, headers: {{x: {{}}}}, queryParams: {{q: {{exact: "1"}}}},
                    ignoreUriCase: true, withoutHeaders: {{y: {{exact: "2"}}}}, statPrefix: s}}]
          timeout: 1s
          retries: {{attempts: 1, perTryTimeout: 1s, retryOn: 5xx, retryRemoteLocalities: true}}
          fault: {{delay: {{fixedDelay: 1s, percentage: {{value: 1}}}}, abort: {{httpStatus: 500, percentage: {{value: 1}}}}}}
          headers: {{request: {{set: {{a: b}}}}, response: {{add: {{c: d}}}}}}
          rewrite: {{uri: /b, authority: x.example}}
          mirror: {{host: sink.example.com}}
          mirrorPercentage: {{value: 5}}
          {TO_HTTPBIN}
        """)
    result = load_text(text, "vs.yaml")
    assert result.ok and not result.diagnostics, [str(d) for d in result.diagnostics]


# --- Envoy accepts all of it ----------------------------------------------------------------------

def test_envoy_validates_every_feature_with_the_fault_filter(tmp_path: Path) -> None:
    features = Path(__file__).parents[1] / "golden" / "cases" / "http-route-features.in.yaml"
    sc, gw = sidecar(features.read_text()), gateway(features.read_text())
    assert any(r.fault for rc in sc.route_configs for v in rc.virtual_hosts for r in v.routes)
    for pc in (sc, gw):
        # The listener builders decide the flag; here every listener gets the fault filter.
        pc = replace(pc, listeners=tuple(replace(lst, fault_injection=True) for lst in pc.listeners))
        assert_envoy_accepts(pc, tmp_path)


def test_a_fault_puts_the_fault_filter_on_the_listener_that_serves_it() -> None:
    fault_vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: slow}
spec:
  hosts: [httpbin.org]
  http:
  - fault: {delay: {fixedDelay: 2s, percentage: {value: 100}}}
    route: [{destination: {host: httpbin.org}}]
"""
    for docs, expected in ((SE, False), (SE + "---\n" + fault_vs, True)):
        loaded = load_text(docs, "faults.yaml")
        assert loaded.ok, [str(d) for d in loaded.diagnostics]
        mesh, _ = load_mesh(None)
        assert mesh is not None
        snap = Snapshot(loaded.resources, mesh)
        pc, _ = translate_sidecar(snap, mesh.workloads[0], 15001)
        assert pc.listeners[0].fault_injection is expected
        chain = [f["name"] for f in filters.http_filters(pc.listeners[0])]
        assert ("envoy.filters.http.fault" in chain) is expected, chain
