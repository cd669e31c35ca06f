"""The web view's data: flows from the gateways' egress metric, quantiles as Prometheus's
histogram_quantile, response flags explained."""

from __future__ import annotations

from prometheus_client.core import Metric

from exitgate.dashboard import flag_meanings, quantile, traffic


def test_quantile_interpolates_within_the_bucket() -> None:
    buckets = [(1.0, 0.0), (5.0, 50.0), (10.0, 100.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == 5.0
    assert quantile(0.75, buckets) == 7.5
    assert quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_flows_join_codes_flags_and_latency() -> None:
    base = {"source_principal": "spiffe://cluster.local/ns/default/sa/sleep", "destination_service": "edition.cnn.com",
            "gateway": "istio-egressgateway", "gateway_namespace": "istio-system", "downstream_tls": "ISTIO_MUTUAL",
            "upstream_tls": "SIMPLE"}
    counter = Metric("exitgate_egress_requests", "", "counter")
    counter.add_sample("exitgate_egress_requests_total", {**base, "response_code": "200", "response_flags": "-"}, 3)
    counter.add_sample("exitgate_egress_requests_total", {**base, "response_code": "503", "response_flags": "UF,URX"}, 1)
    hist = Metric("exitgate_egress_request_duration_milliseconds", "", "histogram")
    for code, n in (("200", 3), ("503", 1)):
        for le, c in (("1", 0), ("5", n), ("+Inf", n)):
            hist.add_sample("exitgate_egress_request_duration_milliseconds_bucket",
                            {**base, "response_code": code, "response_flags": "-", "le": le}, c)
    [flow] = traffic({"istio-egressgateway.istio-system": [counter, hist]})
    assert flow["requests"] == 4 and flow["codes"] == {"200": 3, "503": 1}
    assert [f["flag"] for f in flow["flags"]] == ["-", "UF,URX"]
    assert flow["flags"][1]["meaning"] == "upstream connection failure; upstream retry limit or connect attempts exceeded"
    assert 1.0 < flow["p50_ms"] <= 5.0
    assert flag_meanings("XYZ") == "unknown flag"
