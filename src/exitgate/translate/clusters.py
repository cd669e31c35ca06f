"""Services a proxy sees -> its clusters: one per service port and one per port and subset, with
the TLS, load balancing, connection pool and outlier detection its DestinationRule gives; and
Istio's catch-all clusters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import partial

from exitgate import names
from exitgate.api.networking import ClientTLSSettings, DestinationRuleSpec
from exitgate.api.resources import Resource
from exitgate.ir import CircuitBreakers, Cluster, DiscoveryType, ServiceLabels, TlsMode, VirtualHost
from exitgate.translate.reach import routed_clusters
from exitgate.translate.registry import Service
from exitgate.translate.snapshot import Snapshot
from exitgate.translate.tls import cluster_policy, upstream_tls
from exitgate.translate.traffic_policy import outlier_detection, pool_settings

# Connections carrying a mesh certificate are bounded so rotation takes effect.
ROTATION_BOUND_S = 600.0


def build_clusters(snap: Snapshot, services: Iterable[Service], proxy_ns: str,
                   original_dst: bool = False) -> list[Cluster]:
    """``original_dst``: the proxy sees captured connections, so resolution NONE means each
    connection's own destination (Istio's ORIGINAL_DST); without capture Envoy resolves the
    host the request names."""
    clusters: list[Cluster] = []
    memo = snap.memo
    for svc in services:
        if memo is None:
            clusters += _clusters_of(snap, svc, proxy_ns, original_dst)
        else:
            # A service's clusters change only with its host's ServiceEntry and DestinationRule.
            clusters += memo.fragment(snap.generation, ("service clusters", id(svc), proxy_ns, original_dst),
                                      (svc.host,), svc, lambda: (_clusters_of(snap, svc, proxy_ns, original_dst), ()))
    return clusters


def routed_service_ports(vhosts: Iterable[VirtualHost]) -> set[tuple[str, int]]:
    """The service ports (host, port) whose clusters the routes of ``vhosts`` send requests,
    copies or tunnels to. A sidecar gets the clusters of these ports only (issue 9): where a
    mesh VirtualService sends a host's every request to the egress gateway, the host's own
    clusters would never carry a byte, and at thousands of hosts they were most of the
    sidecar's memory and of Envoy's time to take a push. A port keeps all its clusters, its
    DestinationRule's subsets too, when any route reaches one of them, as in Istio."""
    return {service_port(n) for n in routed_clusters(vhosts) if n.startswith("outbound|")}


def service_port(cluster: str) -> tuple[str, int]:
    """The (host, port) an Istio cluster name names, whatever its subset."""
    parsed = names.parse_cluster_name(cluster)
    return parsed.host, parsed.port


def _clusters_of(snap: Snapshot, svc: Service, proxy_ns: str, original_dst: bool) -> list[Cluster]:
    dr = snap.destination_rule(svc.host, proxy_ns, svc.namespace)
    auto = snap.istio_mutual_gateway_ports.get(svc.host, frozenset())
    if snap.memo is None:
        return _service_clusters(svc, dr, auto, original_dst)
    # Everything a service's clusters depend on, by identity (translate.memo).
    key = ("clusters", id(svc), id(dr.spec) if dr else 0, dr.namespace if dr else "", dr.name if dr else "", auto,
           original_dst)
    return snap.memo.value(key, (svc, dr.spec if dr else None), partial(_service_clusters, svc, dr, auto, original_dst))


def _service_clusters(svc: Service, dr: Resource[DestinationRuleSpec] | None, auto_mtls_ports: frozenset[int],
                      original_dst: bool) -> list[Cluster]:
    """One service's clusters: per port, and per port and subset of its DestinationRule."""
    clusters: list[Cluster] = []
    subsets = [""] + [s.name for s in dr.spec.subsets or []] if dr is not None else [""]
    labels = ServiceLabels(svc.host, svc.name or svc.host, svc.namespace, svc.workload,
                           svc.identities[0] if svc.identities else "")
    rule = f"{dr.namespace}/{dr.name}" if dr is not None else None
    for port in svc.ports:
        for subset in subsets:
            policy = cluster_policy(dr.spec if dr is not None else None, subset, port.number)
            tls_settings = policy.tls
            if tls_settings is None and port.number in auto_mtls_ports:
                # Istio's auto mTLS: a gateway port served with ISTIO_MUTUAL is reached with
                # ISTIO_MUTUAL when no DestinationRule says otherwise.
                tls_settings = ClientTLSSettings(mode="ISTIO_MUTUAL")
            tls = upstream_tls(tls_settings, svc, port.number, subset)
            pool = pool_settings(policy.connection_pool)
            http2 = (port.protocol in ("HTTP2", "GRPC") or (tls is not None and tls.mode is TlsMode.ISTIO_MUTUAL)
                     or pool.h2_upgrade)
            if pool.use_client_protocol and tls is not None and tls.alpn:
                # The protocol follows each request, so a fixed ALPN would be wrong for some:
                # without one Envoy offers each connection pool's own protocol.
                tls = replace(tls, alpn=())
            lifetime = pool.max_connection_duration_s
            if lifetime is None and tls is not None and tls.client_cert_secret:
                lifetime = ROTATION_BOUND_S
            outlier, panic = outlier_detection(policy.outlier_detection)
            discovery = svc.discovery
            if original_dst and svc.resolution == "NONE":
                discovery = DiscoveryType.ORIGINAL_DST
            # Resolved per request (NONE, DYNAMIC_DNS): Envoy picks the endpoint.
            dynamic = discovery in (DiscoveryType.DYNAMIC_FORWARD_PROXY, DiscoveryType.ORIGINAL_DST)
            clusters.append(Cluster(
                name=names.cluster_name(svc.host, port.number, subset),
                discovery=discovery,
                endpoints=() if discovery is DiscoveryType.ORIGINAL_DST else port.endpoints,
                lb_policy="CLUSTER_PROVIDED" if dynamic else policy.lb,
                tls=tls,
                http2=http2,
                connect_timeout_s=pool.connect_timeout_s,
                max_connection_duration_s=lifetime,
                circuit_breakers=pool.circuit_breakers,
                tcp_keepalive=pool.tcp_keepalive,
                idle_timeout_s=pool.idle_timeout_s,
                max_requests_per_connection=pool.max_requests_per_connection,
                max_concurrent_streams=pool.max_concurrent_streams if http2 and not pool.use_client_protocol
                else None,
                use_client_protocol=pool.use_client_protocol,
                outlier_detection=outlier,
                healthy_panic_threshold=panic,
                service=labels,
                destination_rule=rule,
            ))
    return clusters


def passthrough_cluster(original_dst: bool = False) -> Cluster:
    """ALLOW_ANY's destination for a host no service declares: Istio's ORIGINAL_DST
    PassthroughCluster for a captured connection; for a forward proxy, which has no original
    destination, Envoy resolves the host the request names."""
    # Istio gives it the same unlimited circuit breakers as every service cluster.
    discovery = DiscoveryType.ORIGINAL_DST if original_dst else DiscoveryType.DYNAMIC_FORWARD_PROXY
    return Cluster(names.PASSTHROUGH_CLUSTER, discovery, (), lb_policy="CLUSTER_PROVIDED",
                   circuit_breakers=CircuitBreakers())


def blackhole_cluster() -> Cluster:
    """Istio's BlackHoleCluster: no endpoints, so whatever is routed there fails."""
    return Cluster(names.BLACKHOLE_CLUSTER, DiscoveryType.STATIC, ())
