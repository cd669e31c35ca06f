"""Istio's standard metrics at the egress gateway and the sidecar, after real requests through
Istio's TLS origination task (sidecar -> gateway over mTLS -> nginx as edition.cnn.com over
TLS): a 200 series, a 403 series (an AuthorizationPolicy at the gateway) and a 503 series (the
external server down), read from the control plane's monitoring endpoints as Prometheus would."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exitgate.ca import certs
from exitgate.demo.standins import DnsStandIn, NginxServer, find_nginx
from exitgate.envoy.ports import free_port

from tests.e2e.harness import EXAMPLES, Exitgate, make_mesh, start_exitgate, until
from tests.e2e.test_tls_origination import HOST, NGINX_CONF

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

DENY_FORBIDDEN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-forbidden
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: egressgateway
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/forbidden"]
"""

SLEEP_SPIFFE = "spiffe://cluster.local/ns/default/sa/sleep"
GATEWAY_SPIFFE = "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Exitgate, NginxServer]]:
    """The task's world; ``indirect`` parametrization gives more mesh file fields."""
    root, root_key = certs.make_root("test external CA", "exitgate tests", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, HOST, [HOST], key_type="ec256")
    trust = tmp_path / "trust.pem"
    trust.write_bytes(root)
    p80, p443 = free_port(), free_port()
    nginx = NginxServer(tmp_path / "nginx", NGINX_CONF.format(p80=p80, p443=p443, host=HOST), port=p443,
                        files={"server.crt": leaf, "server.key": key})
    nginx.start()
    dns = DnsStandIn({HOST: "127.0.0.1"}).start()
    eg = None
    try:
        mesh = make_mesh(trust, dns.port, {80: p80, 443: p443}, capture="off").model_copy(
            update={"monitoring_port": 0, **getattr(request, "param", {})})
        eg = start_exitgate(tmp_path / "state", mesh)
        yield eg, nginx
    finally:
        if eg is not None:
            eg.cp.stop()
        dns.stop()
        nginx.stop()


def _scrape(eg: Exitgate, path: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{eg.cp.monitoring_port}{path}", timeout=10).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "exitgate-egress.json"


def dashboard_metric_names() -> set[str]:
    """The metric names the repo's Grafana dashboard queries."""
    import json
    import re

    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"\b((?:istio|pilot|citadel|exitgate)_[a-z_]+)\b", e)}


def _value(series: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for lbl, v in series if all(lbl.get(k) == want for k, want in labels.items()))


def _code(eg: Exitgate, path: str) -> str:
    return eg.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}{path}").stdout


def test_istio_standard_metrics_at_the_gateway_and_the_sidecar(running: tuple[Exitgate, NginxServer], tmp_path: Path) -> None:
    eg, nginx = running
    eg.apply(EXAMPLES / "tls-origination")
    assert until(lambda: _code(eg, "/politics"), lambda o: o == "200") == "200"
    for _ in range(2):
        assert _code(eg, "/politics") == "200"
    deny = tmp_path / "deny.yaml"
    deny.write_text(DENY_FORBIDDEN)
    eg.apply(deny)
    assert until(lambda: _code(eg, "/forbidden"), lambda o: o == "403") == "403"
    assert _code(eg, "/forbidden") == "403"
    nginx.stop()
    assert until(lambda: _code(eg, "/politics"), lambda o: o == "503") == "503"

    gw = _scrape(eg, "/proxies/istio-egressgateway.istio-system/stats/prometheus")
    requests = gw["istio_requests_total"]
    common = dict(reporter="source", source_workload="istio-egressgateway", source_workload_namespace="istio-system",
                  source_canonical_service="istio-egressgateway", source_canonical_revision="latest",
                  source_app="istio-egressgateway", source_cluster="Kubernetes", request_protocol="http",
                  connection_security_policy="unknown", grpc_response_status="")
    served = dict(common, destination_service=HOST, destination_service_name=HOST,
                  destination_service_namespace="default", destination_workload="unknown",
                  destination_principal="unknown", destination_canonical_revision="latest",
                  # SIMPLE origination: the gateway presents no certificate of its own upstream.
                  source_principal="unknown")

    # At least the three 200s; a request sent right after the AuthorizationPolicy was applied
    # may still be let through on a connection the replaced listener keeps while it drains.
    ok = _value(requests, response_code="200", response_flags="-", **served)
    assert ok >= 3, requests
    # Denied before any upstream (Envoy sets no flag for RBAC; its details say why): 403.
    assert _value(requests, response_code="403", response_flags="-", **common) == 2, requests
    failed = [lbl for lbl, v in requests if lbl["response_code"] == "503" and v > 0]
    assert failed and all("UF" in lbl["response_flags"] and lbl["destination_service"] == HOST for lbl in failed), requests
    # The duration and size histograms count the same requests (Envoy merges its histograms
    # from the worker threads every 5 s, its stats flush interval).
    until(lambda: str(_value(_scrape(eg, "/proxies/istio-egressgateway/stats/prometheus")[
        "istio_request_duration_milliseconds_count"], response_code="503")), lambda o: float(o) >= 1, timeout=12)
    gw = _scrape(eg, "/proxies/istio-egressgateway.istio-system/stats/prometheus")
    # (A duration recorded by a listener in its last drain moments may not reach a flush.)
    assert 3 <= _value(gw["istio_request_duration_milliseconds_count"], response_code="200", **served) <= ok
    assert _value(gw["istio_request_bytes_count"], response_code="403") == 2
    assert _value(gw["istio_response_bytes_sum"], response_code="200") > 0

    sc = _scrape(eg, "/proxies/sleep.default/stats/prometheus")["istio_requests_total"]
    to_gateway = dict(reporter="source", source_workload="sleep", source_workload_namespace="default", source_app="sleep",
                      source_principal=SLEEP_SPIFFE, destination_principal=GATEWAY_SPIFFE,
                      destination_service="istio-egressgateway.istio-system.svc.cluster.local",
                      destination_service_name="istio-egressgateway", destination_service_namespace="istio-system",
                      destination_workload="istio-egressgateway", destination_workload_namespace="istio-system",
                      destination_app="istio-egressgateway", request_protocol="http")
    # The sidecar counted the same requests as the gateway, which may miss the one a replaced
    # listener answered in its last moments (see the README: "Metrics"); the sidecar's listeners
    # did not change.
    sc_ok = _value(sc, response_code="200", response_flags="-", **to_gateway)
    assert sc_ok - 1 <= ok <= sc_ok, (ok, sc)
    assert _value(sc, response_code="403", **to_gateway) == 2, sc
    # The gateway answered 503; the sidecar's own response carries no flag of its own.
    assert _value(sc, response_code="503", **to_gateway) >= 1, sc

    # A host no service declares goes to ALLOW_ANY's PassthroughCluster: Istio names the
    # destination by the request's Host and the cluster it went to.
    eg.curl("-o", "/dev/null", "http://undeclared.example/")
    sc = until(lambda: _scrape(eg, "/proxies/sleep.default/stats/prometheus"),
               lambda m: _value(m["istio_requests_total"], destination_service="undeclared.example") > 0)["istio_requests_total"]
    assert _value(sc, destination_service="undeclared.example", destination_service_name="PassthroughCluster",
                  destination_principal="unknown", source_principal="unknown", destination_workload="unknown") == 1, sc

    # The merged endpoint: both proxies, told apart by pod and namespace, and the control plane.
    merged = _scrape(eg, "/stats/prometheus")
    assert _value(merged["istio_requests_total"], pod="istio-egressgateway", namespace="istio-system",
                  response_code="200") == ok
    assert _value(merged["istio_requests_total"], pod="sleep", namespace="default", response_code="200") == sc_ok
    assert not any(name.startswith("envoy_istio_") for name in merged)
    assert _value(merged["pilot_xds"]) == 2

    # Every metric the repo's Grafana dashboard queries is in the scrape its Prometheus config
    # makes (the TCP ones: tests/e2e/test_tcp_egress.py).
    wanted = {n for n in dashboard_metric_names() if not n.startswith("istio_tcp_")}
    assert wanted and wanted <= set(merged), sorted(wanted - set(merged))

    cp = _scrape(eg, "/metrics")
    assert _value(cp["pilot_xds_pushes"], type="cds") >= 2 and _value(cp["pilot_xds_pushes"], type="lds") >= 2
    assert _value(cp["pilot_proxy_convergence_time_count"]) >= 2
    assert _value(cp["citadel_server_success_cert_issuance_count"]) >= 2
    assert _value(cp.get("pilot_total_xds_rejects", [])) == 0  # no series until a proxy rejects
