"""DestinationRule connectionPool, outlierDetection and loadBalancer, as Istio translates them:
the layering (top level, port level, subset), the IR clusters, the Envoy Cluster protos, and
Envoy itself accepting a cluster with every setting."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from exitgate import ir
from exitgate.api import diagnostics as dx
from exitgate.api.loader import load_text
from exitgate.api.networking import DestinationRuleSpec
from exitgate.envoy import resources
from google.protobuf import json_format
from exitgate.mesh import load_mesh
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.snapshot import Snapshot
from exitgate.translate.tls import cluster_policy
from exitgate.translate.traffic_policy import seconds
from tests.golden.test_envoy_accepts import assert_envoy_accepts

UINT32_MAX = 2**32 - 1

SERVICE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8080, name: http-alt, protocol: HTTP}
  - {number: 5432, name: tcp, protocol: TCP}
  resolution: DNS
"""


def dr_yaml(spec: str) -> str:
    return ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: default}\n"
            "spec:\n  host: api.example.com\n" + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ") + "\n")


def dr(spec: str) -> DestinationRuleSpec:
    loaded = load_text(dr_yaml(spec), "dr.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    out = loaded.resources[0].spec
    assert isinstance(out, DestinationRuleSpec)
    return out


def gateway_clusters(spec: str | None) -> dict[str, ir.Cluster]:
    text = SERVICE + ("---\n" + dr_yaml(spec) if spec is not None else "")
    loaded = load_text(text, "in.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    mesh, diags = load_mesh(None)
    assert mesh is not None, diags
    pc, _ = translate_gateway(Snapshot(loaded.resources, mesh), mesh.gateways[0])
    return {c.name: c for c in pc.clusters}


# --- layering -----------------------------------------------------------------------------------


def test_a_port_level_entry_replaces_the_whole_top_level_policy() -> None:
    spec = dr("""
        trafficPolicy:
          loadBalancer: {simple: RANDOM}
          tls: {mode: SIMPLE}
          outlierDetection: {consecutive5xxErrors: 3}
          portLevelSettings:
          - port: {number: 8080}
            connectionPool: {tcp: {maxConnections: 5}}
    """)
    top = cluster_policy(spec, "", 80)
    assert (top.lb, top.tls and top.tls.mode, top.tls_path) == ("RANDOM", "SIMPLE", ("spec", "trafficPolicy", "tls"))
    port = cluster_policy(spec, "", 8080)
    # Istio: omitted fields take their defaults, they are not inherited from the top level.
    assert (port.lb, port.tls, port.tls_path, port.outlier_detection) == ("LEAST_REQUEST", None, (), None)
    assert port.connection_pool is not None and port.connection_pool.tcp is not None
    assert port.connection_pool.tcp.max_connections == 5


def test_the_first_port_level_entry_for_a_port_wins() -> None:
    spec = dr("""
        trafficPolicy:
          portLevelSettings:
          - port: {number: 80}
            loadBalancer: {simple: RANDOM}
          - port: {number: 80}
            loadBalancer: {simple: ROUND_ROBIN}
    """)
    assert cluster_policy(spec, "", 80).lb == "RANDOM"


def test_a_subset_overrides_field_by_field_or_whole_with_its_own_port_entry() -> None:
    spec = dr("""
        trafficPolicy:
          loadBalancer: {simple: RANDOM}
          tls: {mode: SIMPLE}
          outlierDetection: {consecutive5xxErrors: 3}
        subsets:
        - name: v1
          trafficPolicy:
            connectionPool: {http: {maxRetries: 2}}
        - name: v2
          trafficPolicy:
            loadBalancer: {simple: ROUND_ROBIN}
            portLevelSettings:
            - port: {number: 80}
              outlierDetection: {consecutive5xxErrors: 1}
    """)
    v1 = cluster_policy(spec, "v1", 80)
    assert (v1.lb, v1.tls and v1.tls.mode, v1.tls_path) == ("RANDOM", "SIMPLE", ("spec", "trafficPolicy", "tls"))
    assert v1.outlier_detection is not None and v1.outlier_detection.consecutive_5xx_errors == 3
    assert v1.connection_pool is not None and v1.connection_pool.http is not None
    # v2 on port 80: its port-level entry is the whole policy (no TLS, Istio's default LB).
    v2 = cluster_policy(spec, "v2", 80)
    assert (v2.lb, v2.tls, v2.connection_pool) == ("LEAST_REQUEST", None, None)
    assert v2.outlier_detection is not None and v2.outlier_detection.consecutive_5xx_errors == 1
    # v2 on another port: field by field, keeping the top level's TLS and outlier detection.
    v2_other = cluster_policy(spec, "v2", 8080)
    assert (v2_other.lb, v2_other.tls and v2_other.tls.mode) == ("ROUND_ROBIN", "SIMPLE")
    assert v2_other.outlier_detection is not None


def test_subset_tls_path_points_at_the_subset() -> None:
    spec = dr("""
        subsets:
        - name: v1
          trafficPolicy:
            portLevelSettings:
            - port: {number: 80}
              tls: {mode: SIMPLE}
    """)
    assert cluster_policy(spec, "v1", 80).tls_path == ("spec", "subsets", 0, "trafficPolicy", "portLevelSettings", 0,
                                                      "tls")
    assert cluster_policy(None, "", 80) == cluster_policy(spec, "", 80)


@pytest.mark.parametrize(("text", "value"), [("2500ms", 2.5), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5)])
def test_seconds(text: str, value: float) -> None:
    assert seconds(text) == value


# --- IR -----------------------------------------------------------------------------------------


def test_without_a_rule_a_cluster_gets_istio_defaults() -> None:
    c = gateway_clusters(None)["outbound|80||api.example.com"]
    assert c.circuit_breakers == ir.CircuitBreakers(UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX)
    assert (c.connect_timeout_s, c.lb_policy, c.outlier_detection, c.healthy_panic_threshold) == \
        (10.0, "LEAST_REQUEST", None, None)
    assert (c.http2, c.use_client_protocol, c.tcp_keepalive, c.idle_timeout_s) == (False, False, None, None)


def test_connection_pool_in_the_ir() -> None:
    c = gateway_clusters("""
        trafficPolicy:
          connectionPool:
            tcp:
              maxConnections: 100
              connectTimeout: 250ms
              tcpKeepalive: {probes: 3, time: 1500ms, interval: 75s}
              maxConnectionDuration: 1h
              idleTimeout: 30m
            http:
              http1MaxPendingRequests: 64
              http2MaxRequests: 1000
              maxRequestsPerConnection: 10
              maxRetries: 0
              h2UpgradePolicy: UPGRADE
              maxConcurrentStreams: 128
    """)["outbound|80||api.example.com"]
    # maxRetries 0 is "unset" to Istio: the unlimited default stays.
    assert c.circuit_breakers == ir.CircuitBreakers(100, 64, 1000, UINT32_MAX)
    assert (c.connect_timeout_s, c.max_connection_duration_s) == (0.25, 3600.0)
    # Keepalive times are whole seconds (Istio passes Duration.Seconds); tcp.idleTimeout applies
    # when http has none.
    assert c.tcp_keepalive == ir.TcpKeepalive(probes=3, time_s=1, interval_s=75)
    assert (c.idle_timeout_s, c.max_requests_per_connection) == (1800.0, 10)
    assert (c.http2, c.max_concurrent_streams, c.use_client_protocol) == (True, 128, False)


def test_h2_upgrade_and_client_protocol() -> None:
    clusters = gateway_clusters("""
        trafficPolicy:
          connectionPool:
            http: {useClientProtocol: true, maxConcurrentStreams: 8, idleTimeout: 15s, h2UpgradePolicy: DEFAULT}
          portLevelSettings:
          - port: {number: 5432}
            connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}
    """)
    c = clusters["outbound|80||api.example.com"]
    # maxConcurrentStreams is for explicit HTTP/2 clusters only.
    assert (c.use_client_protocol, c.http2, c.max_concurrent_streams, c.idle_timeout_s) == (True, False, None, 15.0)
    assert clusters["outbound|5432||api.example.com"].use_client_protocol is False


def test_client_protocol_drops_the_fixed_alpn_of_istio_mutual() -> None:
    c = gateway_clusters("""
        trafficPolicy:
          tls: {mode: ISTIO_MUTUAL}
          connectionPool: {http: {useClientProtocol: true}}
    """)["outbound|80||api.example.com"]
    assert c.tls is not None and c.tls.mode is ir.TlsMode.ISTIO_MUTUAL and c.tls.alpn == ()
    # The mesh-certificate rotation bound stays unless the rule sets a connection lifetime.
    assert c.max_connection_duration_s == 600.0


def test_a_rule_lifetime_replaces_the_rotation_bound() -> None:
    c = gateway_clusters("""
        trafficPolicy:
          tls: {mode: ISTIO_MUTUAL}
          connectionPool: {tcp: {maxConnectionDuration: 5m}}
    """)["outbound|80||api.example.com"]
    assert c.max_connection_duration_s == 300.0 and c.tls is not None and c.tls.alpn == ("h2",)


def test_outlier_detection_in_the_ir() -> None:
    clusters = gateway_clusters("""
        trafficPolicy:
          outlierDetection:
            consecutiveGatewayErrors: 4
            interval: 5s
            baseEjectionTime: 1m
            maxEjectionPercent: 0
            minHealthPercent: 25
          portLevelSettings:
          - port: {number: 8080}
            outlierDetection:
              consecutive5xxErrors: 0
              splitExternalLocalOriginErrors: true
              consecutiveLocalOriginFailures: 2
    """)
    c = clusters["outbound|80||api.example.com"]
    # Only gateway errors given: consecutive_5xx is left to Envoy (5); maxEjectionPercent 0 is unset.
    assert c.outlier_detection == ir.OutlierDetection(consecutive_gateway_failure=4, interval_s=5.0,
                                                      base_ejection_time_s=60.0)
    assert c.healthy_panic_threshold == 25.0
    c = clusters["outbound|8080||api.example.com"]
    assert c.outlier_detection == ir.OutlierDetection(consecutive_5xx=0, split_external_local_origin_errors=True,
                                                      consecutive_local_origin_failure=2)
    # Istio turns panic mode off with outlier detection unless minHealthPercent says otherwise.
    assert c.healthy_panic_threshold == 0.0


# --- Envoy protos -------------------------------------------------------------------------------


def test_envoy_cluster_with_every_setting() -> None:
    c = resources.cluster(EVERY_SETTING)
    t = c.circuit_breakers.thresholds[0]
    assert (t.max_connections.value, t.max_pending_requests.value, t.max_requests.value, t.max_retries.value,
            t.track_remaining) == (100, 64, 1000, 5, True)
    assert c.connect_timeout.ToMilliseconds() == 2500
    ka = c.upstream_connection_options.tcp_keepalive
    assert (ka.keepalive_probes.value, ka.keepalive_time.value, ka.keepalive_interval.value) == (3, 600, 75)
    od = c.outlier_detection
    assert (od.consecutive_5xx.value, od.enforcing_consecutive_5xx.value) == (0, 0)
    assert od.HasField("consecutive_5xx") and od.HasField("enforcing_success_rate")
    assert (od.consecutive_gateway_failure.value, od.enforcing_consecutive_gateway_failure.value) == (4, 100)
    assert (od.consecutive_local_origin_failure.value, od.enforcing_consecutive_local_origin_failure.value) == (2, 100)
    assert od.split_external_local_origin_errors and od.HasField("enforcing_local_origin_success_rate")
    assert (od.interval.ToSeconds(), od.base_ejection_time.ToSeconds(), od.max_ejection_percent.value) == (5, 60, 50)
    assert c.common_lb_config.healthy_panic_threshold.value == 25.0
    options = json_format.MessageToDict(
        c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
        preserving_proto_field_name=True)
    assert options["common_http_protocol_options"] == {
        "idle_timeout": "90s", "max_connection_duration": "3600s", "max_requests_per_connection": 10}
    assert options["explicit_http_config"] == {"http2_protocol_options": {"max_concurrent_streams": 128}}


def test_envoy_cluster_without_outlier_or_limits_stays_bare() -> None:
    c = resources.cluster(ir.Cluster("blackhole", ir.DiscoveryType.STATIC, ()))
    assert not c.HasField("circuit_breakers") and not c.HasField("outlier_detection")
    assert not c.HasField("common_lb_config") and not c.HasField("upstream_connection_options")


def test_envoy_client_protocol_uses_the_downstream_protocol() -> None:
    c = resources.cluster(CLIENT_PROTOCOL)
    options = json_format.MessageToDict(
        c.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
        preserving_proto_field_name=True)
    assert "explicit_http_config" not in options
    assert options["use_downstream_protocol_config"] == {"http_protocol_options": {}, "http2_protocol_options": {}}


def test_large_durations_are_not_written_with_an_exponent() -> None:
    c = resources.cluster(ir.Cluster("c", ir.DiscoveryType.STATIC, (), idle_timeout_s=1_000_000.0))
    assert c.typed_extension_protocol_options  # parsed: "1000000s", not "1e+06s"


EVERY_SETTING = ir.Cluster(
    name="outbound|80||api.example.com",
    discovery=ir.DiscoveryType.STRICT_DNS,
    endpoints=(ir.Endpoint("api.example.com", 80),),
    lb_policy="ROUND_ROBIN",
    http2=True,
    connect_timeout_s=2.5,
    max_connection_duration_s=3600.0,
    circuit_breakers=ir.CircuitBreakers(100, 64, 1000, 5),
    tcp_keepalive=ir.TcpKeepalive(3, 600, 75),
    idle_timeout_s=90.0,
    max_requests_per_connection=10,
    max_concurrent_streams=128,
    outlier_detection=ir.OutlierDetection(
        consecutive_5xx=0, consecutive_gateway_failure=4, interval_s=5.0, base_ejection_time_s=60.0,
        max_ejection_percent=50, split_external_local_origin_errors=True, consecutive_local_origin_failure=2),
    healthy_panic_threshold=25.0,
)

CLIENT_PROTOCOL = ir.Cluster(
    name="outbound|8080||api.example.com",
    discovery=ir.DiscoveryType.STRICT_DNS,
    endpoints=(ir.Endpoint("api.example.com", 8080),),
    tls=ir.UpstreamTls(mode=ir.TlsMode.ISTIO_MUTUAL, sni="outbound_.8080_._.api.example.com",
                       client_cert_secret="default", validation_secret="ROOTCA"),
    http2=True,
    circuit_breakers=ir.CircuitBreakers(),
    use_client_protocol=True,
    outlier_detection=ir.OutlierDetection(consecutive_5xx=7),
    healthy_panic_threshold=0.0,
)


def test_envoy_accepts_every_setting(tmp_path: Path) -> None:
    pc = ir.ProxyConfig(listeners=(), route_configs=(), clusters=(EVERY_SETTING, CLIENT_PROTOCOL),
                        secret_names=("default", "ROOTCA"))
    assert_envoy_accepts(pc, tmp_path)


# --- what stays reported ------------------------------------------------------------------------


def test_connection_pool_and_outlier_detection_load_clean() -> None:
    loaded = load_text(dr_yaml("""
        trafficPolicy:
          connectionPool: {tcp: {maxConnections: 1}}
          outlierDetection: {consecutive5xxErrors: 1}
          portLevelSettings:
          - port: {number: 80}
            connectionPool: {http: {maxRetries: 1}}
            outlierDetection: {interval: 1s}
    """), "dr.yaml")
    assert loaded.ok and loaded.diagnostics == [], [str(d) for d in loaded.diagnostics]


@pytest.mark.parametrize(("spec", "field"), [
    ("trafficPolicy:\n  loadBalancer:\n    consistentHash: {httpHeaderName: x-user}",
     "spec.trafficPolicy.loadBalancer.consistentHash"),
    ("trafficPolicy:\n  loadBalancer:\n    simple: ROUND_ROBIN\n    warmupDurationSecs: 10s",
     "spec.trafficPolicy.loadBalancer.warmupDurationSecs"),
])
def test_what_is_not_implemented_stays_reported(spec: str, field: str) -> None:
    loaded = load_text(dr_yaml(spec), "dr.yaml")
    assert [(d.code, d.field) for d in loaded.diagnostics] == [(dx.UNSUPPORTED, field)]
