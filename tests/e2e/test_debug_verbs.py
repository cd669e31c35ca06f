"""istioctl's debugging verbs through the real ``exitgate`` command against running Envoys:
``proxy-status`` and ``proxy-config cluster|listener|route|endpoint|bootstrap|log|all``."""

from __future__ import annotations

import json

import pytest
import yaml

from exitgate.demo.standins import NginxServer, find_nginx

from tests.e2e.harness import EXAMPLES, Exitgate, until
from tests.e2e.test_metrics import HOST, _code, running  # noqa: F401 - the fixture

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]


def _table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


def test_proxy_status_and_proxy_config(running: tuple[Exitgate, NginxServer]) -> None:  # noqa: F811
    eg, _ = running
    eg.apply(EXAMPLES / "tls-origination")
    assert until(lambda: _code(eg, "/politics"), lambda o: o == "200") == "200"

    status = eg.cli("proxy-status", check=True).stdout
    rows = _table(status)
    assert rows[0] == ["NAME", "CLUSTER", "CDS", "ECDS", "EDS", "LDS", "RDS", "SDS", "ISTIOD", "VERSION"]
    by_name = {r[0]: r for r in rows[1:]}
    assert set(by_name) == {"istio-egressgateway.istio-system", "sleep.default"}
    for r in by_name.values():
        # Clusters carry their endpoints: no EDS (IGNORED, as Istio shows an unsubscribed type).
        assert r[1:8] == ["Kubernetes", "SYNCED", "IGNORED", "IGNORED", "SYNCED", "SYNCED", "SYNCED"], status
    assert json.loads(eg.cli("proxy-status", "-o", "json", check=True).stdout)[0]["types"]["CDS"]["acked"]
    assert _table(eg.cli("proxy-status", "-n", "default", check=True).stdout)[1][0] == "sleep.default"

    clusters = eg.cli("proxy-config", "cluster", "sleep", "--fqdn", HOST, check=True).stdout
    # Port 80 goes to the egress gateway (the mesh route): the sidecar has no cluster of its own
    # for it, where Istio lists one that carries nothing (README, "A sidecar's clusters"); port
    # 443, routed by no VirtualService, keeps its own.
    assert _table(clusters)[1:] == [[HOST, "443", "-", "outbound", "STRICT_DNS", "originate-tls-for-edition-cnn-com.default"]]
    # istioctl matches the filters as substrings of the cluster name, as here.
    subset = _table(eg.cli("proxy-config", "cluster", "sleep", "--subset", "cnn", "--port", "80", "--fqdn", "egressgateway",
                           check=True).stdout)
    assert subset[1][:3] == ["istio-egressgateway.istio-system.svc.cluster.local", "80", "cnn"]
    as_json = json.loads(eg.cli("proxy-config", "cluster", "istio-egressgateway", "--fqdn", HOST, "--port", "443",
                                "-o", "json", check=True).stdout)
    assert [c["name"] for c in as_json] == [f"outbound|443||{HOST}"]
    assert as_json[0]["transport_socket"]["name"] == "envoy.transport_sockets.tls"

    listeners = _table(eg.cli("proxy-config", "listener", "istio-egressgateway", check=True).stdout)
    assert listeners[0] == ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
    assert listeners[1][2:] == ["ALL", "Route:", "https.80.https-port-for-tls-origination.istio-egressgateway.default"]

    routes = eg.cli("proxy-config", "route", "istio-egressgateway", check=True).stdout
    assert f"{HOST}:80" in routes and "direct-cnn-through-egress-gateway.default" in routes
    route_yaml = yaml.safe_load(eg.cli("proxy-config", "route", "sleep", "--name", "http_proxy", "-o", "yaml",
                                       check=True).stdout)
    assert route_yaml[0]["name"] == "http_proxy"

    endpoints = _table(eg.cli("proxy-config", "endpoint", "istio-egressgateway", "--cluster", f"outbound|443||{HOST}",
                              check=True).stdout)
    assert len(endpoints) == 2 and endpoints[1][1:] == ["HEALTHY", "OK", f"outbound|443||{HOST}"]

    boot = json.loads(eg.cli("proxy-config", "bootstrap", "sleep", check=True).stdout)
    assert boot["bootstrap"]["node"]["id"] == eg.cp.proxies[1].record.node_id

    # log: set one logger, then everything; the levels read back.
    out = eg.cli("proxy-config", "log", "sleep", "--level", "http:debug", check=True).stdout
    assert out.startswith("sleep.default:\n") and "  http: debug" in out
    out = eg.cli("proxy-config", "log", "sleep", "--level", "error", check=True).stdout
    assert "  http: error" in out and "  admin: error" in out
    bad = eg.cli("proxy-config", "log", "sleep", "--level", "loud")
    assert bad.returncode != 0 and "unrecognized logging level: loud" in bad.stderr
    bad = eg.cli("proxy-config", "log", "sleep", "--level", "nosuch:debug")
    assert bad.returncode != 0 and "unrecognized logger name: nosuch" in bad.stderr

    everything = eg.cli("proxy-config", "all", "deploy/istio-egressgateway", check=True).stdout
    assert "SERVICE FQDN" in everything and "ADDRESSES" in everything and "VHOST NAME" in everything
    unknown = eg.cli("proxy-config", "cluster", "nosuch")
    assert unknown.returncode == 1 and 'no proxy "nosuch"' in unknown.stderr and "sleep.default" in unknown.stderr
    assert eg.cli("proxy-config", "cluster", "sleep", "-o", "xml").stderr.strip() == 'Error: output format "xml" not supported'


@pytest.mark.parametrize("running", [{"access_log_encoding": "JSON"}], indirect=True, ids=["json-access-log"])
def test_json_access_log_shown_as_soon_as_answered(running: tuple[Exitgate, NginxServer]) -> None:  # noqa: F811
    """Istio's accessLogEncoding JSON with its default fields; `logs --tail 1` right after the
    request shows that request (Envoy flushes its stdout every 50 ms)."""
    eg, _ = running
    eg.apply(EXAMPLES / "tls-origination")
    assert until(lambda: _code(eg, "/politics"), lambda o: o == "200") == "200"
    for path in ("/first", "/second"):
        assert eg.curl("-o", "/dev/null", f"http://{HOST}{path}").returncode == 0
        line = eg.cli("logs", "istio-egressgateway", "--tail", "1", check=True).stdout
        entry = json.loads(line)
        assert entry["path"] == path and entry["response_code"] == 200 and entry["authority"] == HOST
        assert entry["upstream_cluster"] == f"outbound|443||{HOST}"
        assert {"start_time", "route_name", "method", "upstream_transport_failure_reason"} <= set(entry)
    assert eg.cli("logs", "istio-egressgateway", "--tail", "0", check=True).stdout == ""
