"""Sidecar and AuthorizationPolicy analyzers (IST0110, IST0111, IST0127), on resources read the
way ``exitgate analyze -f`` reads them: the loader keeps a valid Sidecar or AuthorizationPolicy
for analysis (its "not supported yet" as a warning), while ``apply`` still refuses them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exitgate import analyze as az
from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.locate import FileLocator
from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.loader import load_paths, load_text
from exitgate.api.resources import Resource
from exitgate.cli.main import build_app
from exitgate.mesh import MeshConfig, WorkloadProxy, default_egress_gateway

from tests.unit.test_analyze import NOW

A = az  # analyzer modules are attributes of the package


def mesh() -> MeshConfig:
    """The egress gateway (istio-system), sleep in default, httpbin in foo; bar has no proxy."""
    return MeshConfig(gateways=[default_egress_gateway()], workloads=[
        WorkloadProxy(name="sleep", namespace="default", service_account="sleep",
                      labels={"app": "sleep", "version": "v1"}),
        WorkloadProxy(name="httpbin", namespace="foo", labels={"app": "httpbin"}),
    ])


def sidecar(name: str, namespace: str = "default", labels: dict[str, str] | None = None,
            selector: bool = True) -> str:
    sel = ""
    if selector and labels is not None:
        body = "".join(f"\n      {k}: {v}" for k, v in labels.items()) or " {}"
        sel = f"\n  workloadSelector:\n    labels:{body}"
    return (f"apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: {name}\n"
            f"  namespace: {namespace}\nspec:{sel}\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n")


def policy(name: str, namespace: str = "default", match_labels: dict[str, str] | None = None,
           extra: str = "") -> str:
    sel = ""
    if match_labels is not None:
        body = "".join(f"\n      {k}: {v}" for k, v in match_labels.items()) or " {}"
        sel = f"\n  selector:\n    matchLabels:{body}"
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n"
            f"  namespace: {namespace}\nspec:{sel}{extra}\n  action: ALLOW\n"
            f"  rules:\n  - from:\n    - source:\n        namespaces: [default]\n")


def policy_from(name: str, namespaces: list[str], not_namespaces: list[str] | None = None) -> str:
    """An ALLOW policy of default whose one source lists ``namespaces`` (and ``notNamespaces``)."""
    nots = f"\n        notNamespaces: {not_namespaces}" if not_namespaces else ""
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n"
            f"  namespace: default\nspec:\n  action: ALLOW\n"
            f"  rules:\n  - from:\n    - source:\n        namespaces: {namespaces}{nots}\n")


def namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def load(*docs: str) -> list[Resource]:
    loaded = load_text("---\n".join(docs), "case.yaml", keep_unsupported=True)
    assert loaded.ok, loaded.diagnostics
    return loaded.resources


def run(analyzer: Analyzer, *docs: str) -> list[Diagnostic]:
    return az.analyze(load(*docs), mesh(), now=NOW, analyzers=(analyzer,))


# --- trigger / near-miss table (test_analyze.test_every_analyzer_has_a_trigger_case reads it) ---

@dataclass
class Case:
    id: str
    analyzer: Analyzer
    docs: tuple[str, ...]
    # (resource, field) of every diagnostic, sorted; empty: nothing reported
    expect: tuple[tuple[str, str | None], ...] = ()
    severity: Severity = Severity.ERROR


SC_SELECTOR = "spec.workloadSelector"
AP_SELECTOR = "spec.selector"
GW_LABELS = {"istio": "egressgateway"}


def gateway(tls: str | None) -> str:
    tls_part = f"\n    tls: {{mode: {tls}}}" if tls else ""
    protocol = "HTTPS" if tls else "HTTP"
    return ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: egress, namespace: istio-system}\n"
            "spec:\n  selector: {istio: egressgateway}\n  servers:\n"
            f"  - port: {{number: 80, name: http, protocol: {protocol}}}\n    hosts: ['*']{tls_part}\n")

CASES: list[Case] = [
    # IST0110: two Sidecars of default select the sleep workload (by different labels)
    Case("sidecar-selector-conflict", A.sidecar_selector_conflict.ANALYZER,
         (sidecar("by-app", labels={"app": "sleep"}), sidecar("by-version", labels={"version": "v1"})),
         (("Sidecar default/by-app", SC_SELECTOR), ("Sidecar default/by-version", SC_SELECTOR))),
    # ... each selects a different workload; the same labels in another namespace select nothing here;
    # a selector without labels and a Sidecar without one are left to IST0111
    Case("sidecar-selector-conflict/ok", A.sidecar_selector_conflict.ANALYZER,
         (sidecar("sleep", labels={"app": "sleep"}), sidecar("httpbin", labels={"app": "httpbin"}),
          sidecar("other-ns", namespace="foo", labels={"version": "v1"}),
          sidecar("no-labels", labels={}), sidecar("default"))),
    # IST0111: two Sidecars of default without a workloadSelector
    Case("sidecar-default-selector", A.sidecar_default_selector.ANALYZER,
         (sidecar("default", selector=False), sidecar("default-2", selector=False),
          sidecar("foo-default", namespace="foo", selector=False)),
         (("Sidecar default/default", None), ("Sidecar default/default-2", None))),
    # ... one per namespace; a selector without labels is a selector
    Case("sidecar-default-selector/ok", A.sidecar_default_selector.ANALYZER,
         (sidecar("default", selector=False), sidecar("foo-default", namespace="foo", selector=False),
          sidecar("sleep", labels={"app": "sleep"}), sidecar("no-labels", labels={}))),
    # IST0127: no proxy of default is labelled app=httpbin (httpbin is in foo)
    Case("authz-no-workloads", A.authz_workloads.ANALYZER,
         (policy("httpbin", match_labels={"app": "httpbin"}),),
         (("AuthorizationPolicy default/httpbin", AP_SELECTOR),), Severity.WARNING),
    # ... mesh-wide (root namespace istio-system): no proxy anywhere matches
    Case("authz-no-workloads/root", A.authz_workloads.ANALYZER,
         (policy("nothing", namespace="istio-system", match_labels={"app": "nothing"}),),
         (("AuthorizationPolicy istio-system/nothing", AP_SELECTOR),), Severity.WARNING),
    # ... without a selector (namespace-wide, or by targetRef) in a namespace without proxies
    Case("authz-no-workloads/empty-namespace", A.authz_workloads.ANALYZER,
         (policy("ns-wide", namespace="bar"),
          policy("by-ref", namespace="bar", extra="\n  targetRef:\n    kind: Service\n    name: web")),
         (("AuthorizationPolicy bar/by-ref", None), ("AuthorizationPolicy bar/ns-wide", None)), Severity.WARNING),
    # ... a policy that selects sleep in its namespace; a mesh-wide one selecting httpbin in foo;
    # namespace-wide ones where there are proxies; a selector without labels; mesh-wide without one
    Case("authz-no-workloads/ok", A.authz_workloads.ANALYZER,
         (policy("sleep", match_labels={"app": "sleep", "version": "v1"}),
          policy("httpbin", namespace="istio-system", match_labels={"app": "httpbin"}),
          policy("ns-wide", namespace="foo"), policy("any", match_labels={}),
          policy("mesh-wide", namespace="istio-system"))),
    # IST0101: a Sidecar whose workloadSelector matches no workload of its namespace
    Case("sidecar-selector", A.sidecar_selector.ANALYZER,
         (sidecar("for-httpbin", labels={"app": "httpbin"}),),
         (("Sidecar default/for-httpbin", "spec.workloadSelector.labels"),)),
    # ... it matches sleep; httpbin is in foo; no selector or one without labels selects everyone
    Case("sidecar-selector/ok", A.sidecar_selector.ANALYZER,
         (sidecar("sleep", labels={"app": "sleep"}), sidecar("httpbin", namespace="foo", labels={"app": "httpbin"}),
          sidecar("default", selector=False), sidecar("no-labels", labels={}))),
    # EG0110: an identity rule (namespaces) at a gateway whose server is plain HTTP (Istio #22609)
    Case("authz-peer-identity", A.authz_peer_identity.ANALYZER,
         (gateway(None), policy("from-default", namespace="istio-system", match_labels=GW_LABELS)),
         (("AuthorizationPolicy istio-system/from-default", "spec.rules"),), Severity.WARNING),
    # ... the server uses ISTIO_MUTUAL; a policy for another proxy does not apply to the gateway
    Case("authz-peer-identity/ok", A.authz_peer_identity.ANALYZER,
         (gateway("ISTIO_MUTUAL"), policy("from-default", namespace="istio-system", match_labels=GW_LABELS),
          policy("sleep-only", match_labels={"app": "sleep"}))),
    # IST0101: source namespaces that no Namespace object declares and no proxy is in
    Case("authz-namespaces", A.authz_namespaces.ANALYZER,
         (policy_from("from-typo", ["defualt", "prod-*"], ["*-test"]),),
         (("AuthorizationPolicy default/from-typo", "spec.rules[0].from[0].source.namespaces[0]"),
          ("AuthorizationPolicy default/from-typo", "spec.rules[0].from[0].source.namespaces[1]"),
          ("AuthorizationPolicy default/from-typo", "spec.rules[0].from[0].source.notNamespaces[0]"))),
    # ... namespaces with a proxy (default, foo, istio-system; names compare without case), one a
    # Namespace object declares (bar), '*', a prefix and a suffix
    Case("authz-namespaces/ok", A.authz_namespaces.ANALYZER,
         (namespace("bar"), policy_from("known", ["default", "FOO", "*", "istio-*", "*-system"], ["bar"]))),
    # EG0111: a policy selecting a workload's sidecar (which has no inbound traffic here)
    Case("authz-on-sidecar", A.authz_on_sidecar.ANALYZER,
         (policy("sleep", match_labels={"app": "sleep"}), policy("default-wide")),
         (("AuthorizationPolicy default/default-wide", None), ("AuthorizationPolicy default/sleep", AP_SELECTOR)),
         Severity.WARNING),
    # ... policies for the gateway, and a mesh-wide one without a selector, are where they belong
    Case("authz-on-sidecar/ok", A.authz_on_sidecar.ANALYZER,
         (policy("gw", namespace="istio-system", match_labels=GW_LABELS), policy("mesh-wide", namespace="istio-system"))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_analyzer(case: Case) -> None:
    found = run(case.analyzer, *case.docs)
    assert sorted((d.resource or "", d.field) for d in found) == list(case.expect), found
    assert all(d.code == case.analyzer.code and d.severity is case.severity and d.file == "case.yaml"
               for d in found), found


# --- Istio's messages --------------------------------------------------------------------------

def test_conflicting_sidecars_message(tmp_path: Path) -> None:
    f = tmp_path / "sidecars.yaml"
    f.write_text("---\n".join([sidecar("by-app", labels={"app": "sleep"}),
                                sidecar("by-version", labels={"version": "v1"})]))
    loaded = load_paths([f], keep_unsupported=True)
    found = az.analyze(loaded.resources, mesh(), now=NOW, analyzers=(A.sidecar_selector_conflict.ANALYZER,),
                       locate=FileLocator())
    assert {d.message for d in found} == {
        'The Sidecars [by-app by-version] in namespace "default" select the same workload pod "sleep", '
        'which can lead to undefined behavior.'}
    # the line of each Sidecar's workloadSelector
    lines = f.read_text().splitlines()
    assert [lines[(d.line or 0) - 1] for d in found] == ["  workloadSelector:"] * 2
    assert [d.line for d in found] == [7, 19]


def test_sidecars_without_selector_message() -> None:
    found = run(A.sidecar_default_selector.ANALYZER, sidecar("b", selector=False), sidecar("a", selector=False))
    assert {d.message for d in found} == {
        'The Sidecars [a b] in namespace "default" have no workload selector, which can lead to undefined behavior.'}


def test_no_matching_workloads_message() -> None:
    found = run(A.authz_workloads.ANALYZER, policy("p", match_labels={"version": "v2", "app": "sleep"}),
                policy("q", namespace="bar"))
    assert [d.message for d in found] == [
        "No matching workloads for this resource with the following labels: app=sleep,version=v2",
        "No matching workloads for this resource with the following labels: "]


def test_root_namespace_comes_from_the_mesh() -> None:
    """A policy in the mesh's root namespace is mesh-wide, whichever namespace that is."""
    resources = load(policy("httpbin", namespace="mesh-root", match_labels={"app": "httpbin"}))
    found = az.analyze(resources, mesh(), now=NOW, analyzers=(A.authz_workloads.ANALYZER,))
    assert [d.code for d in found] == ["IST0127"]  # mesh-root is an ordinary namespace here
    rooted = mesh().model_copy(update={"root_namespace": "mesh-root"})
    assert az.analyze(resources, rooted, now=NOW, analyzers=(A.authz_workloads.ANALYZER,)) == []


# --- the loader: enforced kinds, with their not-yet-supported fields reported -------------------

DOCS = "---\n".join([sidecar("default", selector=False), policy("allow-default", match_labels={"app": "sleep"})])
INGRESS = ("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: with-ingress}\nspec:\n"
           "  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n")


def test_valid_sidecar_and_authorization_policy_load_clean(tmp_path: Path) -> None:
    f = tmp_path / "policies.yaml"
    f.write_text(DOCS)
    loaded = load_paths([f])
    assert loaded.ok and loaded.diagnostics == [], loaded.diagnostics
    assert [(r.kind, r.namespace, r.name) for r in loaded.resources] == [
        ("Sidecar", "default", "default"), ("AuthorizationPolicy", "default", "allow-default")]
    assert [(r.source.file, r.source.line) for r in loaded.resources if r.source] == [(str(f), 1), (str(f), 10)]


def test_a_field_with_no_meaning_here_yet_is_reported_and_kept_only_for_analyze() -> None:
    refused = load_text(INGRESS, "ingress.yaml")
    assert not refused.ok and refused.resources == []
    assert [(d.code, d.severity, d.field) for d in refused.diagnostics] == [
        (dx.UNSUPPORTED, Severity.ERROR, "spec.ingress")]
    kept = load_text(INGRESS, "ingress.yaml", keep_unsupported=True)
    assert kept.ok and [r.name for r in kept.resources] == ["with-ingress"]
    assert [(d.code, d.severity) for d in kept.diagnostics] == [(dx.UNSUPPORTED, Severity.WARNING)]


def test_invalid_ones_are_refused_even_for_analyze() -> None:
    invalid_sidecar = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec: {}\n"
    deny_without_rules = ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
                          "spec: {action: DENY}\n")
    for text in (invalid_sidecar, deny_without_rules):
        loaded = load_text(text, "bad.yaml", keep_unsupported=True)
        assert loaded.resources == [] and not loaded.ok, loaded.diagnostics
        assert any(d.is_error and d.code != dx.UNSUPPORTED for d in loaded.diagnostics)


def test_analyze_cli_reports_them_and_apply_takes_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXITGATE_HOME", raising=False)
    f = tmp_path / "sidecars.yaml"
    f.write_text("---\n".join([sidecar("default", selector=False), sidecar("default-2", selector=False)]))
    state = str(tmp_path / "state")
    runner = CliRunner()
    result = runner.invoke(build_app(), ["analyze", "--state-dir", state, "-f", str(f)])
    assert result.exit_code == 1, result.output
    assert result.output.count("Error [IST0111]") == 2, result.output
    one = tmp_path / "one.yaml"
    one.write_text(sidecar("default", selector=False))
    applied = runner.invoke(build_app(), ["apply", "--state-dir", state, "-f", str(one)])
    assert applied.exit_code == 0, applied.output
    bad = tmp_path / "ingress.yaml"
    bad.write_text(INGRESS)
    refused = runner.invoke(build_app(), ["apply", "--state-dir", state, "-f", str(bad)])
    assert refused.exit_code == 1 and "nothing was applied" in refused.output