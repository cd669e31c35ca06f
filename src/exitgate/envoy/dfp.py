"""Envoy's dynamic forward proxy, which the sidecar's ALLOW_ANY ``PassthroughCluster`` uses: a
forward proxy has no original destination to pass through to, so Envoy resolves whichever host
the request names. The HTTP filter and the cluster share one DNS cache, named here; resolution
uses the bootstrap's resolvers (the mesh file's ``dns.resolvers``).

Pure: Envoy's JSON shapes only.
"""

from __future__ import annotations

from typing import Any

T_FILTER = "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig"
T_CLUSTER = "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig"
HTTP_FILTER = "envoy.filters.http.dynamic_forward_proxy"
CLUSTER_TYPE = "envoy.clusters.dynamic_forward_proxy"


def dns_cache_config() -> dict[str, Any]:
    # The filter and the cluster must name the same cache with the same settings.
    return {"name": "passthrough_dns_cache", "dns_lookup_family": "V4_PREFERRED"}


def http_filter() -> dict[str, Any]:
    return {"name": HTTP_FILTER, "typed_config": {"@type": T_FILTER, "dns_cache_config": dns_cache_config()}}


def cluster_type() -> dict[str, Any]:
    return {"name": CLUSTER_TYPE, "typed_config": {"@type": T_CLUSTER, "dns_cache_config": dns_cache_config()}}
