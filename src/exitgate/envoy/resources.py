"""IR -> Envoy v3 protos: listeners, route configurations, clusters and secrets.

Pure. Each builder writes the resource as Envoy's JSON shape and parses it into the typed
message with ``protoparse.parse`` (``json_format.ParseDict``'s rules, faster): the dict reads
like Envoy's documentation, and the parse rejects any field name Envoy's protos do not have.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from typing import Any, TypeVar

from google.protobuf.message import Message

# Imported for their side effect of registering the Any types used in typed_config.
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2  # noqa: F401
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2  # noqa: F401
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import dynamic_forward_proxy_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2  # noqa: F401
from envoy.extensions.filters.network.sni_dynamic_forward_proxy.v3 import sni_dynamic_forward_proxy_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2  # noqa: F401
from xds.type.v3 import typed_struct_pb2  # noqa: F401

from exitgate import ir, names
from exitgate.envoy import dfp
from exitgate.envoy import protoparse
from exitgate.envoy import filters
from exitgate.envoy import telemetry

# Istio's default text access-log format (meshConfig.accessLogFormat unset).
ISTIO_ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

# Istio's default JSON fields (meshConfig.accessLogEncoding JSON, accessLogFormat unset), in its order.
ISTIO_JSON_ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%", "route_name": "%ROUTE_NAME%", "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%", "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%", "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%", "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%", "user_agent": "%REQ(USER-AGENT)%", "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%", "upstream_host": "%UPSTREAM_HOST%", "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%", "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%", "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}

T_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
T_STDOUT = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
T_DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
T_UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
T_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
T_TLS_INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
T_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

ADS: dict[str, Any] = {"ads": {}, "resource_api_version": "V3"}


def _sds(name: str) -> dict[str, Any]:
    if name.startswith((names.CREDENTIAL_PREFIX, names.FILE_CERT_PREFIX, names.FILE_ROOT_PREFIX)):
        # A user's secret may be missing. Without a timeout the cluster would wait for it
        # forever, unused; with one it becomes active and fails each connection with the reason
        # ("Secret is not supplied by SDS") in the access log, a 503 at the client.
        return {"name": name, "sds_config": {**ADS, "initial_fetch_timeout": "1s"}}
    return {"name": name, "sds_config": ADS}


def duration(value: float) -> str:
    # Whole milliseconds, never an exponent ("1e+06s" is not a protobuf Duration).
    return f"{round(value * 1000) / 1000:.3f}".rstrip("0").rstrip(".") + "s"


M = TypeVar("M", bound=Message)


def parse_json(data: dict[str, Any], message: M) -> M:
    return protoparse.parse(data, message)


def hcm_filter(lst: ir.HttpListener) -> dict[str, Any]:
    """Envoy's HTTP connection manager for an HTTP listener (RDS, filters, Istio's access log)."""
    hcm: dict[str, Any] = {
        "@type": T_HCM,
        "stat_prefix": lst.stat_prefix,
        "codec_type": "AUTO",
        "rds": {"config_source": ADS, "route_config_name": lst.route_config},
        "http_filters": filters.http_filters(lst),
        "use_remote_address": False,
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
    }
    if lst.ignore_port_in_host:
        hcm["strip_any_host_port"] = True
    if lst.connect:
        # A forward proxy's tunnels: routes with a connect_matcher take them (_connect_route).
        hcm["upgrade_configs"] = [{"upgrade_type": "CONNECT"}]
    logs: list[dict[str, Any]] = []
    if lst.access_log:
        logs.append(stdout_log(lst.log_format))
    if lst.telemetry is not None:
        logs += telemetry.http_metrics(lst.telemetry)
        if not lst.telemetry.host_fallback:  # a gateway
            mode = "ISTIO_MUTUAL" if lst.tls is not None and lst.tls.require_client_cert else \
                "SIMPLE" if lst.tls is not None else "NONE"
            logs.append(telemetry.egress_metrics(lst.telemetry, mode))
    if logs:
        hcm["access_log"] = logs
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}


def listener(lst: ir.HttpListener) -> listener_pb2.Listener:
    chain: dict[str, Any] = {"filters": [hcm_filter(lst)]}
    if lst.tls is not None:
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": _downstream_tls(lst.tls)}
    data: dict[str, Any] = {
        "name": lst.name,
        "address": {"socket_address": {"address": lst.address, "port_value": lst.port}},
        "filter_chains": [chain],
    }
    if not lst.bind_to_port:
        data["bind_to_port"] = False
    return parse_json(data, listener_pb2.Listener())


def tls_passthrough_listener(lst: ir.TlsPassthroughListener) -> listener_pb2.Listener:
    """The TLS inspector reads the ClientHello's SNI; each chain proxies its names as TCP, after
    the listener's RBAC network filters (AuthorizationPolicy) let the connection through. With
    ``tls`` the chains terminate the mesh's mTLS first."""
    rbac = filters.network_rbac_filters(lst.rbac)
    chains = []
    for chain in lst.chains:
        match: dict[str, Any] = {}
        if chain.server_names:
            match["server_names"] = list(chain.server_names)
        if chain.destination_cidrs:
            match["prefix_ranges"] = [_cidr(c) for c in chain.destination_cidrs]
        dynamic = [dfp.sni_filter(chain.sni_dynamic_port)] if chain.sni_dynamic_port is not None else []
        entry: dict[str, Any] = {"name": chain.name, "filter_chain_match": match,
                                 "filters": [*rbac, *dynamic, tcp_proxy(f"{lst.stat_prefix}.{chain.name}", chain.clusters,
                                                                         lst.access_log, lst.telemetry, lst.log_format)]}
        if lst.tls is not None:
            # ISTIO_MUTUAL: the mesh's mTLS ends here; what it carried goes on untouched.
            entry["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": _downstream_tls(lst.tls)}
        chains.append(entry)
    data: dict[str, Any] = {
        "name": lst.name,
        "address": {"socket_address": {"address": lst.address, "port_value": lst.port}},
        "filter_chains": chains,
    }
    if any(c.server_names for c in lst.chains):
        data["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector",
                                     "typed_config": {"@type": T_TLS_INSPECTOR}}]
        if lst.default_cluster is not None or not all(c.server_names for c in lst.chains):
            # Some connections here are not TLS, and a protocol whose server speaks first
            # (MySQL, SMTP) sends no ClientHello to wait for: after Istio's former
            # protocolDetectionTimeout it goes on as plain TCP.
            data["listener_filters_timeout"] = "0.1s"
            data["continue_on_listener_filters_timeout"] = True
    if lst.default_cluster is not None:
        data["default_filter_chain"] = {"name": lst.default_cluster, "filters": [
            tcp_proxy(lst.default_cluster, (ir.WeightedCluster(lst.default_cluster, 100),), lst.access_log,
                      lst.telemetry, lst.log_format)]}
    if not lst.bind_to_port:
        data["bind_to_port"] = False
    return parse_json(data, listener_pb2.Listener())


def stdout_log(fmt: ir.AccessLogFormat | None) -> dict[str, Any]:
    """Istio's access log to the proxy's stdout: its default text format, the mesh's text
    format (a newline added if missing, as Istio adds it), or JSON fields."""
    log_format: dict[str, Any]
    if fmt is not None and fmt.encoding == "JSON":
        fields = json.loads(fmt.format) if fmt.format else ISTIO_JSON_ACCESS_LOG_FORMAT
        log_format = {"json_format": fields, "json_format_options": {"sort_properties": False}}
    else:
        text = fmt.format if fmt is not None and fmt.format else ISTIO_ACCESS_LOG_FORMAT
        log_format = {"text_format_source": {"inline_string": text if text.endswith("\n") else text + "\n"}}
    return {"name": "envoy.access_loggers.stdout", "typed_config": {"@type": T_STDOUT, "log_format": log_format}}


def tcp_proxy(stat_prefix: str, clusters: tuple[ir.WeightedCluster, ...], access_log: bool,
              metrics: ir.Telemetry | None = None, fmt: ir.AccessLogFormat | None = None) -> dict[str, Any]:
    """Envoy's tcp_proxy to one cluster or a weighted split, with Istio's access log and
    Istio's TCP metrics."""
    tcp: dict[str, Any] = {"@type": T_TCP_PROXY, "stat_prefix": stat_prefix}
    if len(clusters) == 1:
        tcp["cluster"] = clusters[0].cluster
    else:
        tcp["weighted_clusters"] = {"clusters": [{"name": w.cluster, "weight": w.weight}
                                                 for w in clusters if w.weight > 0]}
    logs: list[dict[str, Any]] = []
    if access_log:
        # Istio's format: the HTTP operators read "-" for a TCP connection.
        logs.append(stdout_log(fmt))
    if metrics is not None:
        # The metrics count a connection when its upstream is connected too; the access log
        # still writes one line, when the connection ends.
        tcp["access_log_options"] = {"flush_access_log_on_connected": True}
        for log in logs:
            log["filter"] = {"log_type_filter": {"types": ["TcpConnectionEnd"]}}
        logs += telemetry.tcp_metrics(metrics)
    if logs:
        tcp["access_log"] = logs
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": tcp}


def _cidr(value: str) -> dict[str, Any]:
    address, _, length = value.partition("/")
    return {"address_prefix": address, "prefix_len": int(length) if length else (128 if ":" in address else 32)}


def _validation(secret: str | None, sans: tuple[ir.SanMatch, ...]) -> dict[str, Any]:
    default: dict[str, Any] = {}
    if sans:
        key = "exact"
        default["match_typed_subject_alt_names"] = [
            {"san_type": s.kind, "matcher": {key: s.value}} for s in sans
        ]
    return {"combined_validation_context": {"default_validation_context": default,
                                            "validation_context_sds_secret_config": _sds(secret)}} if secret else {}


def _downstream_tls(tls: ir.DownstreamTls) -> dict[str, Any]:
    common: dict[str, Any] = {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": "TLSv1_3"},
        "tls_certificate_sds_secret_configs": [_sds(tls.cert_secret)],
        "alpn_protocols": list(tls.alpn),
    }
    if tls.validation_secret:
        default: dict[str, Any] = {}
        if tls.spiffe_trust_domain:
            # Only this trust domain's SPIFFE identities may connect (SPIFFE certs have no CN).
            default["match_typed_subject_alt_names"] = [
                {"san_type": "URI", "matcher": {"prefix": f"spiffe://{tls.spiffe_trust_domain}/"}}
            ]
        common["combined_validation_context"] = {"default_validation_context": default,
                                                 "validation_context_sds_secret_config": _sds(tls.validation_secret)}
    return {"@type": T_DOWNSTREAM_TLS, "common_tls_context": common,
            "require_client_certificate": tls.require_client_cert}


def _upstream_tls(tls: ir.UpstreamTls) -> dict[str, Any]:
    common: dict[str, Any] = {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2",
                       "tls_maximum_protocol_version": "TLSv1_3" if tls.max_tls13 else "TLSv1_2"},
    }
    if tls.client_cert_secret:
        common["tls_certificate_sds_secret_configs"] = [_sds(tls.client_cert_secret)]
    if not tls.insecure_skip_verify:
        common.update(_validation(tls.validation_secret, tls.san_matches))
    if tls.alpn:
        common["alpn_protocols"] = list(tls.alpn)
    out: dict[str, Any] = {"@type": T_UPSTREAM_TLS, "common_tls_context": common}
    if tls.sni:
        out["sni"] = tls.sni
    return out


def _http_options(c: ir.Cluster) -> dict[str, Any]:
    options: dict[str, Any] = {"@type": T_HTTP_OPTIONS}
    if c.use_client_protocol:
        # Istio's setUseDownstreamProtocol: HTTP/1.1 upstream for HTTP/1.1 requests, h2 for h2.
        options["use_downstream_protocol_config"] = {"http_protocol_options": {}, "http2_protocol_options": {}}
    elif c.http2:
        h2: dict[str, Any] = {}
        if c.max_concurrent_streams is not None:
            h2["max_concurrent_streams"] = c.max_concurrent_streams
        options["explicit_http_config"] = {"http2_protocol_options": h2}
    else:
        options["explicit_http_config"] = {"http_protocol_options": {}}
    common: dict[str, Any] = {}
    if c.idle_timeout_s is not None:
        common["idle_timeout"] = duration(c.idle_timeout_s)
    if c.max_connection_duration_s is not None:
        common["max_connection_duration"] = duration(c.max_connection_duration_s)
    if c.max_requests_per_connection is not None:
        common["max_requests_per_connection"] = c.max_requests_per_connection
    if common:
        options["common_http_protocol_options"] = common
    return options


def _outlier_detection(od: ir.OutlierDetection) -> dict[str, Any]:
    """Istio's applyOutlierDetection: only consecutive-failure ejection, each kind enforced
    fully (100%) when its threshold is above 0 and not at all when it is 0; success-rate
    ejection off."""
    out: dict[str, Any] = {"enforcing_success_rate": 0}
    if od.consecutive_5xx is not None:
        out["consecutive_5xx"] = od.consecutive_5xx
        out["enforcing_consecutive_5xx"] = 100 if od.consecutive_5xx > 0 else 0
    if od.consecutive_gateway_failure is not None:
        out["consecutive_gateway_failure"] = od.consecutive_gateway_failure
        out["enforcing_consecutive_gateway_failure"] = 100 if od.consecutive_gateway_failure > 0 else 0
    if od.interval_s is not None:
        out["interval"] = duration(od.interval_s)
    if od.base_ejection_time_s is not None:
        out["base_ejection_time"] = duration(od.base_ejection_time_s)
    if od.max_ejection_percent is not None:
        out["max_ejection_percent"] = od.max_ejection_percent
    if od.split_external_local_origin_errors:
        out["split_external_local_origin_errors"] = True
        if od.consecutive_local_origin_failure is not None:
            out["consecutive_local_origin_failure"] = od.consecutive_local_origin_failure
            out["enforcing_consecutive_local_origin_failure"] = 100
        out["enforcing_local_origin_success_rate"] = 0
    return out


def cluster(c: ir.Cluster, shared_labels: Collection[str] = ()) -> cluster_pb2.Cluster:
    """``shared_labels``: the metric labels the stats loggers write as constants (left out)."""
    options = _http_options(c)
    data: dict[str, Any] = {
        "name": c.name,
        "connect_timeout": duration(c.connect_timeout_s),
        "lb_policy": c.lb_policy,
        # The same for most clusters of a proxy: parsed once (the DFP's is completed below first).
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":
                                             protoparse.Reused(options)},
        "metadata": {"filter_metadata": telemetry.cluster_metadata(c, shared_labels)},
    }
    if c.circuit_breakers is not None:
        cb = c.circuit_breakers
        data["circuit_breakers"] = protoparse.Reused({"thresholds": [{
            "max_connections": cb.max_connections,
            "max_pending_requests": cb.max_pending_requests,
            "max_requests": cb.max_requests,
            "max_retries": cb.max_retries,
            # Istio's default: the remaining_* gauges show how close each limit is.
            "track_remaining": True,
        }]})
    if c.tcp_keepalive is not None:
        ka: dict[str, Any] = {}
        if c.tcp_keepalive.probes is not None:
            ka["keepalive_probes"] = c.tcp_keepalive.probes
        if c.tcp_keepalive.time_s is not None:
            ka["keepalive_time"] = c.tcp_keepalive.time_s
        if c.tcp_keepalive.interval_s is not None:
            ka["keepalive_interval"] = c.tcp_keepalive.interval_s
        data["upstream_connection_options"] = {"tcp_keepalive": ka}
    if c.outlier_detection is not None:
        data["outlier_detection"] = _outlier_detection(c.outlier_detection)
    if c.healthy_panic_threshold is not None:
        data["common_lb_config"] = {"healthy_panic_threshold": {"value": c.healthy_panic_threshold}}
    if c.discovery is ir.DiscoveryType.ORIGINAL_DST:
        # Istio's PassthroughCluster: the captured connection's own destination, no endpoints.
        data["type"] = "ORIGINAL_DST"
    elif c.discovery is ir.DiscoveryType.DYNAMIC_FORWARD_PROXY:
        data["cluster_type"] = dfp.cluster_type()
        # Envoy insists: were TLS ever added, SNI and the SAN to verify follow the host asked for.
        options["upstream_http_protocol_options"] = {"auto_sni": True, "auto_san_validation": True}
    else:
        data["type"] = c.discovery.value
        data["load_assignment"] = {
            "cluster_name": c.name,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": e.address, "port_value": e.port}}}}
                for e in c.endpoints
            ]}] if c.endpoints else [],
        }
    if c.credential_version is not None:
        data["metadata"]["filter_metadata"]["exitgate"] = {"credential_version": c.credential_version}
    if c.discovery in (ir.DiscoveryType.STRICT_DNS, ir.DiscoveryType.LOGICAL_DNS):
        data["dns_lookup_family"] = "V4_PREFERRED"
    if c.tls is not None:
        data["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": _upstream_tls(c.tls)}
    return parse_json(data, cluster_pb2.Cluster())


def secret(s: ir.SecretData) -> secret_pb2.Secret:
    if s.cert_pem is not None and s.key_pem is not None:
        data: dict[str, Any] = {"name": s.name, "tls_certificate": {
            "certificate_chain": {"inline_bytes": _b64(s.cert_pem)},
            "private_key": {"inline_bytes": _b64(s.key_pem)},
        }}
    else:
        vc: dict[str, Any] = {"trusted_ca": {"inline_bytes": _b64(s.ca_pem or b"")}}
        if s.crl_pem:
            vc["crl"] = {"inline_bytes": _b64(s.crl_pem)}
        data = {"name": s.name, "validation_context": vc}
    return parse_json(data, secret_pb2.Secret())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
