"""Istio's name and value rules, one by one (the case files in ``validation_cases`` show them in
whole resources), and ``apply`` refusing a batch that has any error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from exitgate.api.base import (
    duration_or_off_problem,
    duration_problem,
    export_to_issues,
    host_problem,
    ip_or_cidr_problem,
)
from exitgate.api.networking import gateway_host_problem, host_matches, sidecar_host_problem
from exitgate.api.security import attribute_key_problem, path_template_problem
from exitgate.cli.main import app
from exitgate.store import SNAPSHOT_FILE


@pytest.mark.parametrize("host", ["api.example.com", "reviews", "*.example.com", "*", "istio.io.", "a-1.b-2.io",
                                  "xn--bcher-kva.example", "API.Example.COM", "*washingtonpost.com",
                                  "*-api.example.com"])
def test_hosts_istio_accepts(host: str) -> None:
    # Istio's ValidateWildcardDomain: '*' may begin the first label ("*washingtonpost.com").
    assert host_problem(host) is None


@pytest.mark.parametrize(("host", "why"), [
    ("", "must not be empty"), ("a" * 256, "longer than 255"), ("f*o.example.com", "label 'f*o'"),
    ("foo.*.com", "only begin the first label"), ("api.*", "only begin the first label"),
    ("*.*.com", "only begin the first label"), ("-api.example.com", "label '-api'"),
    ("api..example.com", "label ''"), ("api_x.example.com", "label 'api_x'"), ("10.0.0.1", "all digits"),
    ("a" * 64 + ".com", "label"),
])
def test_hosts_istio_rejects(host: str, why: str) -> None:
    problem = host_problem(host)
    assert problem is not None and why in problem


def test_fqdn_takes_no_wildcard() -> None:
    assert host_problem("*.example.com", wildcard=False)
    assert host_problem("api.example.com", wildcard=False) is None


def test_gateway_and_sidecar_hosts_take_no_partial_wildcard() -> None:
    # Istio's ValidatePartialWildCard, for Gateway and Sidecar hosts only.
    assert "partial wildcard" in (host_problem("*foo.example.com", partial=False) or "")
    assert host_problem("*.example.com", partial=False) is None and host_problem("*", partial=False) is None


@pytest.mark.parametrize(("host", "ok"), [
    ("api.example.com", True), ("*", True), ("./api.example.com", True), ("*/api.example.com", True),
    ("istio-system/*", True), ("192.0.2.1", True), ("reviews", False), ("~/api.example.com", False),
    ("ns/", False), ("/api.example.com", False), ("Bad_NS/a.b", False), ("./*.*.com", False),
    ("*bar.com", False), ("ns1/*bar.com", False),
])
def test_gateway_hosts(host: str, ok: bool) -> None:
    assert (gateway_host_problem(host) is None) is ok, gateway_host_problem(host)


@pytest.mark.parametrize(("host", "ok"), [
    ("./*", True), ("*/*", True), ("~/*", True), ("istio-system/*", True), ("./api.example.com", True),
    ("*/*.example.com", True), ("api.example.com", False), ("./reviews", False), ("./192.0.2.1", False),
    ("x/api.*.com", False), ("~ns1/*", True), ("~/foo.com", True), ("~./*", True), ("~*/foo.com", True),
    ("~Invalid_NS/*", False), ("test/*a.com", False), ("/", False),
])
def test_sidecar_egress_hosts(host: str, ok: bool) -> None:
    assert (sidecar_host_problem(host) is None) is ok, sidecar_host_problem(host)


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("api.example.com", "api.example.com", True), ("*.example.com", "api.example.com", True),
    ("api.example.com", "*.example.com", True), ("*.example.com", "*.api.example.com", True),
    ("*.example.com", "api.example.org", False), ("a.example.com", "b.example.com", False),
])
def test_host_overlap_is_istios(a: str, b: str, overlap: bool) -> None:
    assert host_matches(a, b) is overlap


@pytest.mark.parametrize(("value", "ok"), [
    ("10.0.0.1", True), ("10.0.0.0/8", True), ("2001:db8::/32", True), ("10.0.0.1/24", True),
    ("10.0.0.256", False), ("10.0.0.0/33", False), ("example.com", False), ("1.2.3.4/5/6", False),
])
def test_addresses(value: str, ok: bool) -> None:
    assert (ip_or_cidr_problem(value) is None) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("5s", True), ("100ms", True), ("1m30s", True), ("1.5s", True), ("1h", True), ("0s", False),
    ("500us", False), ("1.0005s", False), ("5", False), ("5 s", False), ("", False),
])
def test_durations(value: str, ok: bool) -> None:
    assert (duration_problem(value) is None) is ok, duration_problem(value)


@pytest.mark.parametrize(("value", "ok"), [
    ("0s", True), ("500us", True), ("1s", True), ("1.5ms", False), ("1.0005s", False), ("x", False),
])
def test_tcp_idle_timeout_zero_turns_it_off(value: str, ok: bool) -> None:
    # Istio skips ValidateDuration for a tcp idleTimeout of 0 whole milliseconds.
    assert (duration_or_off_problem(value) is None) is ok, duration_or_off_problem(value)


@pytest.mark.parametrize(("values", "service_entry", "problems"), [
    (["."], False, 0), (["*"], False, 0), (["ns-a", "ns-b", "."], False, 0), (["~"], True, 0),
    (["~"], False, 1), (["~", "."], True, 1), (["*", "."], False, 1), ([".", "prod"], False, 1),
    (["Bad_Ns"], False, 1), (["a", "a"], False, 1),
])
def test_export_to(values: list[str], service_entry: bool, problems: int) -> None:
    found = export_to_issues(values, "prod", ("exportTo",), service_entry=service_entry)
    assert len(found) == problems, found


@pytest.mark.parametrize(("key", "ok"), [
    ("request.headers[x-token]", True), ("source.ip", True), ("remote.ip", True), ("source.namespace", True),
    ("source.principal", True), ("request.auth.principal", True), ("request.auth.audiences", True),
    ("request.auth.presenter", True), ("request.auth.claims[groups]", True), ("destination.ip", True),
    ("destination.port", True), ("connection.sni", True), ("source.serviceAccount", True),
    ("experimental.envoy.filters.network.mysql_proxy[db.table]", True),
    ("request.headers", False), ("request.headers[]", False), ("destination.labels[app]", False),
    ("destination.namespace", False), ("destination.name", False), ("request.method", False), ("", False),
])
def test_authorization_condition_keys(key: str, ok: bool) -> None:
    assert (attribute_key_problem(key) is None) is ok


@pytest.mark.parametrize(("path", "ok"), [
    ("/api", True), ("/api/*", True), ("/v1/{*}/items", True), ("/v1/{*}/{**}", True), ("/{**}", True),
    ("/v1/{**}/x", True), ("/v1/{**}/{*}", False), ("/v1/{x}", False), ("/v1/{*}/a b", False),
])
def test_authorization_path_templates(path: str, ok: bool) -> None:
    assert (path_template_problem(path) is None) is ok, path_template_problem(path)


SERVICE_ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts: [edition.cnn.com]
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  resolution: DNS
"""

AUTHORIZATION_POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
spec:
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{}]
"""


def test_apply_refuses_a_batch_with_a_valid_but_not_enforced_field_whole(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXITGATE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "batch.yaml"
    f.write_text(SERVICE_ENTRY + "---\n" + AUTHORIZATION_POLICY)
    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["apply", "-f", str(f), "--state-dir", str(state)])
    assert result.exit_code == 1
    err = " ".join(result.stderr.split())
    assert f"{f}:16: Error [EG0006] (AuthorizationPolicy default/ext-authz) spec.action:" in err
    assert "nothing was applied" in err
    assert not (state / SNAPSHOT_FILE).exists()
