"""The static bootstrap every exitgate Envoy starts from.

The bootstrap holds only what cannot come over xDS: the node identity, the admin listener, the
``xds-grpc`` cluster that points at the control plane, stats tag rules (readable metrics for
Istio's ``outbound|443||edition.cnn.com`` cluster names), the DNS resolver and a connection cap.
Listeners, routes, clusters and secrets all arrive over one ADS stream.

``build_bootstrap`` is pure (no sockets, clocks or environment): the same options always give
the same dict, so the output can be golden-tested and checked with ``envoy --mode validate``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The static cluster that carries the ADS stream. Istio uses the same name, so Envoy's own
# stats (``cluster.xds-grpc.*``) read the same as in a mesh.
XDS_CLUSTER = "xds-grpc"
# gRPC metadata key the control plane checks on every ADS stream (xDS connections are
# authenticated: a process that can reach the control plane must not get another identity).
XDS_TOKEN_HEADER = "x-exitgate-token"

_CARES_RESOLVER = "envoy.network.dns_resolver.cares"
_CARES_TYPE = "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig"
_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_DOWNSTREAM_CONNECTIONS = "envoy.resource_monitors.global_downstream_max_connections"
_DOWNSTREAM_CONNECTIONS_TYPE = (
    "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)

# Where a per-cluster stat starts after ``cluster.<name>.``: any label with an underscore
# (``upstream_rq_total``, ``circuit_breakers``, ``lb_healthy_panic``; DNS host names have none),
# or one of the few stats whose first labels have none. Each alternative is as specific as the
# stats allow so that host labels such as ``default`` (a namespace), ``internal`` or ``ssl``
# stay in the name.
_CLUSTER_STAT_START = "|".join(
    (
        r"[^.]*_",
        r"version$",
        r"ssl\.(?:[^.]*_|handshake$|ciphers\.|versions\.|curves\.|sigalgs\.)",
        r"http[123]\.",
        r"(?:internal|external|canary|retry)\.upstream_",
        r"default\.total_match_count$",
        r"zone\.[^.]+\.[^.]+\.upstream_",
    )
)

# Envoy's default ``envoy.cluster_name`` rule takes one dot-separated token after ``cluster.``,
# so ``cluster.outbound|443||edition.cnn.com.upstream_rq_total`` would give the cluster
# ``outbound|443||edition`` and a metric named ``envoy_cluster_cnn_com_upstream_rq_total``.
# This rule replaces it under the same tag name, so the Prometheus label stays
# ``envoy_cluster_name``: an Istio-shaped name ``direction|port|subset|host`` runs up to the
# label where a stat starts; any other cluster name is one token, as in Envoy's default.
# The regex is ECMAScript (std::regex, which has lookahead): group 1 is cut from the stat name,
# group 2 is the tag value. Known limit: a host with an inner label like ``http2`` is cut there.
_CLUSTER_NAME_RE = (
    r"^cluster\.(("
    r"(?:outbound|inbound)\|\d+\|[^|]*\|[^.|]+"
    r"(?:\.(?!(?:" + _CLUSTER_STAT_START + r"))[^.]+)*"
    r"|[^.]+"
    r")\.)"
)

# Envoy 1.40's default tag names other than ``envoy.cluster_name``. Replacing a default rule
# needs ``use_all_default_tags: false`` plus this list: with both the default and a custom
# rule of the same name Envoy keeps the first match and logs "Skipping duplicate tag" warnings
# into the proxy log. A name listed without a regex selects Envoy's built-in rule; an unknown
# name fails bootstrap validation, so a renamed tag cannot go unnoticed. (Collected by
# validating each candidate name, and checked by comparing /stats/prometheus output with the
# default configuration's.)
_DEFAULT_TAG_NAMES = (
    "cipher_suite",
    "envoy.clientssl_prefix",
    "envoy.connection_limit_prefix",
    "envoy.dns_filter_prefix",
    "envoy.dynamo_operation",
    "envoy.dynamo_partition_id",
    "envoy.dynamo_table",
    "envoy.ext_authz_prefix",
    "envoy.fault_downstream_cluster",
    "envoy.google_grpc_client_prefix",
    "envoy.grpc_bridge_method",
    "envoy.grpc_bridge_service",
    "envoy.health_check_name",
    "envoy.http_conn_manager_prefix",
    "envoy.http_user_agent",
    "envoy.listener_address",
    "envoy.local_http_ratelimit_prefix",
    "envoy.local_listener_ratelimit_prefix",
    "envoy.local_network_ratelimit_prefix",
    "envoy.mongo_callsite",
    "envoy.mongo_cmd",
    "envoy.mongo_collection",
    "envoy.mongo_prefix",
    "envoy.proxy_protocol_prefix",
    "envoy.proxy_protocol_version",
    "envoy.ratelimit_prefix",
    "envoy.rbac_http_prefix",
    "envoy.rbac_policy_name",
    "envoy.rbac_prefix",
    "envoy.rds_route_config",
    "envoy.redis_prefix",
    "envoy.response_code",
    "envoy.response_code_class",
    "envoy.route",
    "envoy.scoped_rds_config",
    "envoy.ssl_cipher",
    "envoy.ssl_curve",
    "envoy.ssl_sigalg",
    "envoy.ssl_version",
    "envoy.tcp_prefix",
    "envoy.thrift_prefix",
    "envoy.tls_certificate",
    "envoy.udp_prefix",
    "envoy.virtual_cluster",
    "envoy.virtual_host",
    "envoy.worker_id",
    "envoy.xds_resource_name",
)


# Istio's stats matcher (pkg/bootstrap/config.go and envoy_bootstrap.json): a proxy keeps only
# these stats unless its proxy config asks for more. Per-cluster stats are most of an Envoy's
# memory at thousands of clusters (measured: a third of a 6,000-cluster sidecar's), and Istio's
# own metrics are emitted under the ``istio`` and ``reporter=`` prefixes; exitgate's own egress
# metric (``envoy.telemetry.egress_metrics``) under ``exitgate.``.
ISTIO_STATS_PREFIXES = ("reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc",
                        "wasm", "component", "istio", "exitgate.")
ISTIO_STATS_SUFFIXES = ("rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied", "downstream_cx_active")
ISTIO_STATS_REGEXPS = (r"vhost\..*\.route\..*",)


@dataclass(frozen=True)
class StatsInclusion:
    """Stats an Envoy keeps on top of Istio's required ones (``proxyStatsMatcher``)."""

    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    regexps: tuple[str, ...] = ()


@dataclass(frozen=True)
class BootstrapOptions:
    """Everything that differs between two exitgate Envoys' bootstraps."""

    node_id: str
    cluster: str  # Envoy's service cluster, e.g. "istio-egressgateway.istio-system"
    xds_host: str  # an IP literal: the bootstrap must not depend on DNS to find the control plane
    xds_port: int
    xds_token: str
    admin_port: int
    admin_host: str = "127.0.0.1"
    # (address, port) of DNS servers for every DNS cluster; empty keeps Envoy's default
    # (the system resolver configuration).
    dns_resolvers: tuple[tuple[str, int], ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    xds_connect_timeout_s: float = 1.0
    # Global cap on accepted connections. Far above anything a loopback proxy sees; setting one
    # at all also silences the warning Envoy otherwise writes to every proxy's log at startup.
    max_downstream_connections: int = 100_000
    # Incremental xDS (Envoy's DELTA_GRPC; Istio's default, ISTIO_DELTA_XDS): a change sends only the
    # resources it changed. False: State of the World, every resource of a changed type.
    delta_xds: bool = True
    # Stats kept beyond Istio's required set (the mesh file's ``proxy_stats_matcher``).
    stats_inclusion: StatsInclusion = field(default_factory=lambda: StatsInclusion())


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _check_ip(what: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} must be an IP address, not {host!r}") from None


def _check_port(what: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"{what} must be a port number 1-65535, not {port!r}")


def _duration(seconds: float) -> str:
    # proto3 JSON Duration: decimal seconds with an "s" suffix.
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    return {
        "name": XDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": _duration(opts.xds_connect_timeout_s),
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket_address(opts.xds_host, opts.xds_port)}}]}
            ],
        },
        # gRPC needs HTTP/2; without this Envoy speaks HTTP/1.1 to the control plane.
        "typed_extension_protocol_options": {
            _HTTP_PROTOCOL_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_PROTOCOL_OPTIONS}",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        # Notice a half-dead control-plane connection within seconds, not at
                        # the kernel's TCP timeout; Envoy then reconnects and resubscribes.
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"},
                    }
                },
            }
        },
    }


def dns_resolver_config(resolvers: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    for host, port in resolvers:
        _check_ip("DNS resolver address", host)
        _check_port("DNS resolver port", port)
    return {
        "name": _CARES_RESOLVER,
        "typed_config": {
            "@type": _CARES_TYPE,
            "resolvers": [_socket_address(host, port) for host, port in resolvers],
            # Only these servers: falling back to /etc/resolv.conf would let a host the
            # configured DNS does not know resolve to the real Internet.
            "use_resolvers_as_fallback": False,
            # Query names as written: resolv.conf search domains would add queries (and
            # possibly answers) for names like ``edition.cnn.com.corp.example``.
            "dns_resolver_options": {"no_default_search_domain": True},
        },
    }


def _unique(items: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(items))


def stats_matcher(extra: StatsInclusion) -> dict[str, Any]:
    """Istio's inclusion list, the required entries first and then the proxy config's."""
    patterns: list[dict[str, Any]] = [{"prefix": p} for p in _unique(ISTIO_STATS_PREFIXES + extra.prefixes)]
    patterns += [{"suffix": s} for s in _unique(ISTIO_STATS_SUFFIXES + extra.suffixes)]
    patterns += [{"safe_regex": {"regex": r}} for r in _unique(ISTIO_STATS_REGEXPS + extra.regexps)]
    return {"inclusion_list": {"patterns": patterns}}


def _stats_config(extra: StatsInclusion) -> dict[str, Any]:
    return {
        "use_all_default_tags": False,
        "stats_tags": [
            {"tag_name": "envoy.cluster_name", "regex": _CLUSTER_NAME_RE},
            *({"tag_name": name} for name in _DEFAULT_TAG_NAMES),
        ],
        "stats_matcher": stats_matcher(extra),
    }


def build_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """Return the bootstrap for one Envoy as a JSON-able dict (Envoy accepts JSON as YAML)."""
    _check_ip("xds_host", opts.xds_host)
    _check_ip("admin_host", opts.admin_host)
    _check_port("xds_port", opts.xds_port)
    _check_port("admin_port", opts.admin_port)
    if not opts.node_id or not opts.cluster:
        raise ValueError("node_id and cluster must not be empty")

    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    if opts.xds_token:
        grpc_service["initial_metadata"] = [{"key": XDS_TOKEN_HEADER, "value": opts.xds_token}]

    bootstrap: dict[str, Any] = {
        "node": {
            "id": opts.node_id,
            "cluster": opts.cluster,
            # Copy into plain dicts so the result is JSON-able whatever Mapping was given.
            "metadata": json.loads(json.dumps(dict(opts.metadata))),
        },
        "admin": {"address": _socket_address(opts.admin_host, opts.admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if opts.delta_xds else "GRPC",
                "transport_api_version": "V3",
                # The node (with its metadata) is sent once per stream, not on every request.
                "set_node_on_first_message_only": True,
                "grpc_services": [grpc_service],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [_xds_cluster(opts)]},
        "stats_config": _stats_config(opts.stats_inclusion),
        # As Istio's bootstrap: a cluster's traffic stats are created when it first carries
        # traffic, not with it (most of a cluster's 150 stats, each matched against the
        # inclusion list and refused one by one: at 10,000 clusters the gateway holds thousands
        # it never uses); and a cluster's per-worker part is created on first use as well.
        "deferred_stat_options": {"enable_deferred_creation_stats": True},
        "cluster_manager": {"enable_deferred_cluster_creation": True},
        # Histograms take their values from the worker threads at a stats flush. Flushed when
        # read (the control plane reads every 2 s and before each push) rather than every 5 s:
        # a listener replaced within 5 s of its requests took their durations with it.
        "stats_flush_on_admin": True,
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": _DOWNSTREAM_CONNECTIONS,
                    "typed_config": {
                        "@type": _DOWNSTREAM_CONNECTIONS_TYPE,
                        "max_active_downstream_connections": opts.max_downstream_connections,
                    },
                }
            ]
        },
    }
    if opts.dns_resolvers:
        bootstrap["typed_dns_resolver_config"] = dns_resolver_config(opts.dns_resolvers)
    return bootstrap


def render_bootstrap(opts: BootstrapOptions) -> str:
    """The bootstrap as JSON text, stable (sorted keys) so files diff cleanly."""
    return json.dumps(build_bootstrap(opts), indent=2, sort_keys=True) + "\n"
