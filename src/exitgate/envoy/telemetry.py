"""Istio's standard metrics, computed in Envoy by its stats access logger (no Python on the
request path): ``istio_requests_total``, ``istio_request_duration_milliseconds``,
``istio_request_bytes`` and ``istio_response_bytes`` at every HTTP connection manager, and the
four ``istio_tcp_*`` metrics at every TCP proxy, with Istio's labels in Istio's order.

Istio's stats filter (istio/proxy ``istio_stats.cc``) is not in upstream Envoy; its rules are
rebuilt here from access-log operators and CEL expressions:

- gateways and sidecars both report as the client, ``reporter="source"``; the ``source_*``
  labels are the proxy's own workload (constants per listener);
- the ``destination_*`` labels come from the metadata of the cluster the request went to
  (``envoy.resources.cluster`` writes it under ``exitgate.telemetry``), ``unknown`` when there is
  none; without a service, a sidecar names the destination by the request's Host, a gateway
  ``unknown`` (Istio disables the Host fallback at gateways);
- principals are the URI SANs of the upstream TLS connection's certificates, ``unknown`` without;
- ``connection_security_policy`` is ``unknown`` at the client, as Istio's;
- request and response bytes are the downstream wire bytes (headers included), as Istio's.

Envoy prefixes its stats with ``envoy_`` in ``/stats/prometheus``: the control plane's metrics
endpoints serve these under Istio's own names (``monitoring.py``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from exitgate import ir, labels, names

T_STATS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stats.v3.Config"
T_TYPED_STRUCT = "type.googleapis.com/xds.type.v3.TypedStruct"
# The stats scope: Envoy names them istio.requests_total, i.e. envoy_istio_requests_total.
SCOPE = "istio"
METADATA_NAMESPACE = "exitgate.telemetry"



def _literal(value: str) -> str:
    # Envoy takes no empty format: an empty label is an empty CEL string.
    return value.replace("%", "%%") if value else "%CEL('')%"


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Every cluster's metadata has these keys (``cluster_metadata``) but those all of the proxy's
# clusters share (``labels.shared_labels``, written as constants), so they are read natively: a
# CEL expression costs about 0.7 µs per label and stat, most of a request's metrics. A request
# that reached no cluster reads the route's (a direct response's: ``route_metadata``); only one
# that matched no route at all reads empty values.
def _read(t: ir.Telemetry, key: str) -> str:
    for k, v in t.shared:
        if k == key:
            return _literal(v)
    return f"%CLUSTER_METADATA({METADATA_NAMESPACE}:{key})%%METADATA(ROUTE:{METADATA_NAMESPACE}:{key})%"


def route_metadata(name: str) -> dict[str, Any]:
    """The destination labels of a route that answers itself, whole (a few routes a proxy)."""
    return {METADATA_NAMESPACE: labels.route_labels(name)}


# Requests that no service answers: the sidecar's catch-all routes (ALLOW_ANY's passthrough,
# REGISTRY_ONLY's 502) and a request that matched no route. Istio names their destination by the
# request's Host at a sidecar, ``unknown`` at a gateway. Told apart by an access-log filter, one
# CEL expression per request on the route's name; every label is then a constant or read
# natively (a CEL label costs ~0.7 µs per label and stat, and one over the cluster's metadata
# converts all of it: together they halved the data path's throughput).
CATCH_ALL = (f"!has(xds.route_name) || xds.route_name == '' || xds.route_name == {_cel_string(names.ALLOW_ANY_ROUTE)}"
             f" || xds.route_name == {_cel_string(names.BLOCK_ALL_ROUTE)}")
T_CEL_FILTER = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"


def _cel_filter(expression: str) -> dict[str, Any]:
    return {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel",
                                 "typed_config": {"@type": T_CEL_FILTER, "expression": expression}}}


def _peer_tags(t: ir.Telemetry, catch_all: bool = False) -> list[tuple[str, str]]:
    s = t.source
    if catch_all:
        service = "%REQ(:AUTHORITY)%" if t.host_fallback else "unknown"
        # PassthroughCluster's metadata and block_all's route metadata name them, as Istio does.
        name = _read(t, "destination_service_name") if t.host_fallback else "unknown"
        source_principal = destination_principal = "unknown"
    else:
        service, name = _read(t, "destination_service"), _read(t, "destination_service_name")
        # The local certificate's URI SAN on the mesh's mTLS; the cluster says "unknown" otherwise.
        default = dict(t.shared).get("source_principal_default")
        source_principal = (f"%CLUSTER_METADATA({METADATA_NAMESPACE}:source_principal_default)%" if default is None
                            else default.replace("%", "%%")) + "%UPSTREAM_LOCAL_URI_SAN%"
        destination_principal = _read(t, "destination_principal")
    return [
        ("reporter", "source"),
        ("source_workload", _literal(s.workload)),
        ("source_canonical_service", _literal(s.canonical_service)),
        ("source_canonical_revision", _literal(s.canonical_revision)),
        ("source_workload_namespace", _literal(s.namespace)),
        ("source_principal", source_principal),
        ("source_app", _literal(s.app)),
        ("source_version", _literal(s.version)),
        ("source_cluster", _literal(s.cluster_id)),
        ("destination_workload", _read(t, "destination_workload")),
        ("destination_workload_namespace", _read(t, "destination_workload_namespace")),
        ("destination_principal", destination_principal),
        ("destination_app", _read(t, "destination_app")),
        ("destination_version", _read(t, "destination_version")),
        ("destination_service", service),
        ("destination_canonical_service", _read(t, "destination_canonical_service")),
        ("destination_canonical_revision", _read(t, "destination_canonical_revision")),
        ("destination_service_name", name),
        ("destination_service_namespace", _read(t, "destination_service_namespace")),
        ("destination_cluster", _read(t, "destination_cluster")),
    ]


def _tags(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value_format": v} for k, v in pairs]


def _logger(config: dict[str, Any], log_filter: dict[str, Any] | None = None) -> dict[str, Any]:
    # A TypedStruct: the Python protos predate ``stats_scope`` (``stat_prefix`` is deprecated).
    out: dict[str, Any] = {"name": "envoy.access_loggers.stats", "typed_config": {
        "@type": T_TYPED_STRUCT, "type_url": T_STATS_LOG, "value": {"stats_scope": {"prefix": SCOPE}, **config}}}
    if log_filter is not None:
        out["filter"] = log_filter
    return out


GRPC = {"name": "content-type", "string_match": {"prefix": "application/grpc"}}


def http_metrics(t: ir.Telemetry) -> list[dict[str, Any]]:
    """The stats access loggers of an HTTP connection manager, one log per request each: by
    protocol (Istio tells gRPC by the content-type) and by whether a service answered (see
    ``CATCH_ALL``), so that each logger's labels are constants or native reads."""
    def logger(protocol: str, matcher: dict[str, Any], catch_all: bool) -> dict[str, Any]:
        tags = _tags([
            *_peer_tags(t, catch_all),
            ("request_protocol", protocol),
            ("response_code", "%RESPONSE_CODE%"),
            ("grpc_response_status", "%GRPC_STATUS_NUMBER%"),  # empty unless gRPC, as Istio's
            ("response_flags", "%RESPONSE_FLAGS%"),
            ("connection_security_policy", "unknown"),
        ])

        def stat(name: str) -> dict[str, Any]:
            return {"name": name, "tags": tags}

        which = _cel_filter(CATCH_ALL if catch_all else f"!({CATCH_ALL})")
        return _logger({
            "counters": [{"stat": stat("requests_total"), "value_fixed": 1}],
            "histograms": [
                {"stat": stat("request_duration_milliseconds"), "unit": "Milliseconds", "value_format": "%DURATION%"},
                {"stat": stat("request_bytes"), "unit": "Bytes", "value_format": "%DOWNSTREAM_WIRE_BYTES_RECEIVED%"},
                {"stat": stat("response_bytes"), "unit": "Bytes", "value_format": "%DOWNSTREAM_WIRE_BYTES_SENT%"},
            ],
        }, {"and_filter": {"filters": [{"header_filter": {"header": matcher}}, which]}})

    # No content-type is not gRPC: a missing header must count as empty for the inverted match.
    http = {**GRPC, "invert_match": True, "treat_missing_header_as_empty": True}
    return [logger(p, m, c) for p, m in (("grpc", GRPC), ("http", http)) for c in (False, True)]


EGRESS_SCOPE = "exitgate"


def egress_metrics(t: ir.Telemetry, downstream_tls: str) -> dict[str, Any]:
    """exitgate's own metric at a gateway, under its own name: who (the workload's SPIFFE ID,
    from the mesh mTLS hop) reached which external service through this gateway, with which
    TLS on each hop (``downstream_tls``: the listener's). Istio's gateway metrics name the
    gateway as the source; the web view needs the workload behind it. Read natively, no CEL."""
    tags = _tags([
        ("gateway", _literal(t.source.workload)),
        ("gateway_namespace", _literal(t.source.namespace)),
        ("source_principal", "%DOWNSTREAM_PEER_URI_SAN%"),
        ("downstream_tls", _literal(downstream_tls)),
        ("destination_service", _read(t, "destination_service")),
        ("upstream_tls", _read(t, "tls_mode")),
        ("response_code", "%RESPONSE_CODE%"),
        ("response_flags", "%RESPONSE_FLAGS%"),
    ])
    return {"name": "envoy.access_loggers.stats", "typed_config": {
        "@type": T_TYPED_STRUCT, "type_url": T_STATS_LOG, "value": {
            "stats_scope": {"prefix": EGRESS_SCOPE},
            "counters": [{"stat": {"name": "egress_requests_total", "tags": tags}, "value_fixed": 1}],
            "histograms": [{"stat": {"name": "egress_request_duration_milliseconds", "tags": tags},
                            "unit": "Milliseconds", "value_format": "%DURATION%"}]}}}


# The flags of a connection that never reached an upstream: it is counted as opened when it ends.
NEVER_CONNECTED = ["UF", "UO", "UH", "NR", "URX", "NC", "UPE"]


def _log_type(kind: str) -> dict[str, Any]:
    return {"log_type_filter": {"types": [kind]}}


def tcp_metrics(t: ir.Telemetry) -> list[dict[str, Any]]:
    """The stats access loggers of a TCP proxy, which logs when the upstream connection is made
    (``flush_access_log_on_connected``) and when the connection ends: opened is counted at the
    first (or at the end, for a connection that never got an upstream), closed and the bytes at
    the end. Istio adds the bytes every few seconds while a connection lasts; here they are
    added when it closes."""
    tags = _tags([*_peer_tags(t), ("request_protocol", "tcp"), ("response_flags", "%RESPONSE_FLAGS%"),
                  ("connection_security_policy", "unknown")])

    def counter(name: str, value: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"stat": {"name": name, "tags": tags}}
        if value is None:
            out["value_fixed"] = 1
        else:
            out["value_format"] = value
        return out

    opened = {"or_filter": {"filters": [
        _log_type("TcpUpstreamConnected"),
        {"and_filter": {"filters": [_log_type("TcpConnectionEnd"), {"response_flag_filter": {"flags": NEVER_CONNECTED}}]}},
    ]}}
    return [
        _logger({"counters": [counter("tcp_connections_opened_total")]}, opened),
        _logger({"counters": [counter("tcp_connections_closed_total"),
                              counter("tcp_sent_bytes_total", "%DOWNSTREAM_WIRE_BYTES_SENT%"),
                              counter("tcp_received_bytes_total", "%DOWNSTREAM_WIRE_BYTES_RECEIVED%")]},
                _log_type("TcpConnectionEnd")),
    ]


def cluster_metadata(c: ir.Cluster, shared: Collection[str] = ()) -> dict[str, Any]:
    """The cluster's ``filter_metadata``: Istio's own (``istio.services``, ``istio.config``, which
    ``proxy-config`` reads) and the destination labels the stats loggers read, but for those
    every cluster the proxy's traffic reaches shares (``shared``: the loggers' constants; a
    cluster nothing reaches loses its own values for them, unread). Every cluster has
    the latter, possibly empty, so that its lookups fall back instead of failing."""
    found = labels.cluster_labels(c)
    istio: dict[str, Any] = {}
    if c.service is not None:
        svc = c.service
        istio["services"] = [{"host": svc.host, "name": svc.name, "namespace": svc.namespace}]
    if c.destination_rule:
        ns, _, name = c.destination_rule.partition("/")
        istio["config"] = f"/apis/networking.istio.io/v1/namespaces/{ns}/destination-rule/{name}"
    out: dict[str, Any] = {METADATA_NAMESPACE: {k: v for k, v in found.items() if k not in shared}}
    if istio:
        out["istio"] = istio
    return out
