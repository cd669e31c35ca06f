"""Envoy's dynamic forward proxy, which the sidecar's ALLOW_ANY ``PassthroughCluster`` uses
without capture (a forward proxy has no original destination to pass through to) and DYNAMIC_DNS
services everywhere: Envoy resolves whichever host the request names, or for TLS passed through,
the SNI. The HTTP filter, the SNI network filter and the cluster share one DNS cache, named
here; resolution uses the bootstrap's resolvers (the mesh file's ``dns.resolvers``).

Pure: Envoy's JSON shapes only.
"""

from __future__ import annotations

from typing import Any

T_FILTER = "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig"
T_SNI_FILTER = "type.googleapis.com/envoy.extensions.filters.network.sni_dynamic_forward_proxy.v3.FilterConfig"
T_CLUSTER = "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig"
HTTP_FILTER = "envoy.filters.http.dynamic_forward_proxy"
CLUSTER_TYPE = "envoy.clusters.dynamic_forward_proxy"


def dns_cache_config() -> dict[str, Any]:
    # The filter and the cluster must name the same cache with the same settings.
    return {"name": "passthrough_dns_cache", "dns_lookup_family": "V4_PREFERRED"}


def http_filter() -> dict[str, Any]:
    return {"name": HTTP_FILTER, "typed_config": {"@type": T_FILTER, "dns_cache_config": dns_cache_config()}}


def sni_filter(port: int) -> dict[str, Any]:
    """The network filter that resolves a TLS connection's SNI for a dynamic forward proxy
    cluster behind tcp_proxy (passthrough to whichever host the client named)."""
    return {"name": "envoy.filters.network.sni_dynamic_forward_proxy",
            "typed_config": {"@type": T_SNI_FILTER, "dns_cache_config": dns_cache_config(), "port_value": port}}


def cluster_type() -> dict[str, Any]:
    return {"name": CLUSTER_TYPE, "typed_config": {"@type": T_CLUSTER, "dns_cache_config": dns_cache_config()}}
