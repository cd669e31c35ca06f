"""IR -> Envoy listeners for transparent capture: ``virtualOutbound`` (15001) and the DNS proxy
(15053), both bound inside the workload's network namespace (``network_namespace_filepath``)
while Envoy itself runs outside it. See ``exitgate.capture`` for the namespace's rules.

Pure: Envoy's JSON shapes, parsed into the typed messages.
"""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2  # noqa: F401
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.udp.dns_filter.v3 import dns_filter_pb2  # noqa: F401
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2  # noqa: F401

from exitgate import ir
from exitgate.envoy.bootstrap import dns_resolver_config
from exitgate.envoy.resources import hcm_filter, parse_json, tcp_proxy

T_ORIGINAL_DST = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
T_HTTP_INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
T_DNS_FILTER = "type.googleapis.com/envoy.extensions.filters.udp.dns_filter.v3.DnsFilterConfig"


def _address(address: str, port: int, netns: str, protocol: str = "TCP") -> dict[str, Any]:
    sa: dict[str, Any] = {"address": address, "port_value": port, "network_namespace_filepath": netns}
    if protocol != "TCP":
        sa["protocol"] = protocol
    return {"socket_address": sa}


def listener(lst: ir.CaptureListener | ir.DnsListener) -> listener_pb2.Listener:
    return _virtual_outbound(lst) if isinstance(lst, ir.CaptureListener) else _dns(lst)


def _virtual_outbound(lst: ir.CaptureListener) -> listener_pb2.Listener:
    data: dict[str, Any] = {
        "name": lst.name,
        "address": _address(lst.address, lst.port, lst.netns),
        # Hand the connection to the listener for its original destination (0.0.0.0_PORT).
        "use_original_dst": True,
        "listener_filters": [{"name": "envoy.filters.listener.original_dst",
                              "typed_config": {"@type": T_ORIGINAL_DST}}],
        # Istio's PassthroughFilterChain: no listener for the port, not HTTP.
        "default_filter_chain": {"name": "PassthroughFilterChain", "filters": [
            tcp_proxy(lst.default_cluster, (ir.WeightedCluster(lst.default_cluster, 100),), lst.access_log,
                      lst.telemetry, lst.log_format)]},
        "filter_chains": [],
    }
    if lst.http is not None:
        data["listener_filters"].append({"name": "envoy.filters.listener.http_inspector",
                                         "typed_config": {"@type": T_HTTP_INSPECTOR}})
        # A protocol whose server speaks first sends nothing to sniff: after Istio's former
        # protocolDetectionTimeout it is passed through as TCP.
        data["listener_filters_timeout"] = "0.1s"
        data["continue_on_listener_filters_timeout"] = True
        data["filter_chains"] = [{"name": "virtualOutbound-http",
                                  "filter_chain_match": {"application_protocols": ["http/1.1", "h2c"]},
                                  "filters": [hcm_filter(lst.http)]}]
    return parse_json(data, listener_pb2.Listener())


def _dns(lst: ir.DnsListener) -> listener_pb2.Listener:
    client: dict[str, Any] = {"resolver_timeout": "5s", "max_pending_lookups": 256}
    if lst.resolvers:
        client["typed_dns_resolver_config"] = dns_resolver_config(lst.resolvers)
    config = {
        "@type": T_DNS_FILTER,
        "stat_prefix": "dns",
        "server_config": {"inline_dns_table": {"virtual_domains": [
            {"name": host, "endpoint": {"address_list": {"address": list(addresses)}}, "answer_ttl": "30s"}
            for host, addresses in lst.table]}},
        "client_config": client,
    }
    data = {
        "name": lst.name,
        "address": _address(lst.address, lst.port, lst.netns, "UDP"),
        "udp_listener_config": {},
        "listener_filters": [{"name": "envoy.filters.udp.dns_filter", "typed_config": config}],
    }
    return parse_json(data, listener_pb2.Listener())
