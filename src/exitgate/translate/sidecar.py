"""Snapshot x workload -> the IR of its sidecar: the workload's HTTP forward proxy (Istio's
``http_proxy`` listener and route table) or, when the workload runs captured in its own network
namespace, Istio's outbound listeners (``translate.capture``) over the same route table; scoped
by the Sidecar resource that applies to it, with Istio's catch-all for hosts no service
declares (ALLOW_ANY or REGISTRY_ONLY)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial

from exitgate import names
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.networking import VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.ir import (
    CaptureListener, Cluster, DiscoveryType, DnsListener, HttpListener, ProxyConfig, Route, RouteConfig,
    Telemetry, TlsPassthroughListener, VirtualHost, WeightedCluster,
)
from exitgate.mesh import WorkloadProxy
from exitgate.translate.authz import policies_on_sidecar
from exitgate.translate.capture import CaptureSettings, Tunnel, capture_listeners
from exitgate.translate.clusters import (
    blackhole_cluster, build_clusters, passthrough_cluster, routed_service_ports, service_port,
)
from exitgate.translate.proxy import secret_names
from exitgate.translate.registry import Service
from exitgate.translate.route_features import DEFAULT_RETRY
from exitgate.translate.routing import match_contexts, routes_for
from exitgate.translate.scope import SidecarScope, sidecar_scope
from exitgate.translate.snapshot import MESH, BoundVirtualService, Snapshot
from exitgate.translate.telemetry import log_format, with_telemetry, workload_labels
from exitgate.translate.tls_routes import tcp_route_for, tls_route_for, with_sni_dynamic_ports


def _default_route(service: Service, port: int) -> Route:
    # Istio gives the route of a service without a VirtualService its default retry policy too.
    return Route("default", "/", (WeightedCluster(names.cluster_name(service.host, port), 100),), retry=DEFAULT_RETRY)


def _domains(host: str, port: int) -> tuple[str, ...]:
    # A forward-proxy request for port 80 carries the bare host; any other port is in the authority.
    return (host, f"{host}:{port}") if port == 80 else (f"{host}:{port}",)


def _scoped(snap: Snapshot, scope: SidecarScope, host: str, port: int,
            workload_ns: str) -> list[Resource[VirtualServiceSpec]]:
    """The mesh VirtualServices for ``host`` that the egress listener serving ``port`` selects."""
    listener = scope.listener_for(port)
    if listener is None:
        return []
    return [vs for vs in snap.virtual_services_for(MESH, host, workload_ns) if id(vs) in listener.selected]


@dataclass(frozen=True)
class _ServicePart:
    """What one service gives a sidecar: a virtual host per HTTP port, a tunnel per other port."""

    vhosts: tuple[VirtualHost, ...]
    tunnels: tuple[Tunnel, ...]
    http_ports: tuple[int, ...]


def _service_part(snap: Snapshot, scope: SidecarScope, workload_ns: str, svc: Service,
                  by_host: Mapping[str, Service]) -> _ServicePart:
    vhosts: list[VirtualHost] = []
    tunnels: list[Tunnel] = []
    http_ports: list[int] = []
    for port in svc.ports:
        egress = scope.listener_for(port.number)
        if egress is None or egress.service(svc.host) is None:
            continue
        vss = _scoped(snap, scope, svc.host, port.number, workload_ns)
        if not port.is_http:
            # HTTPS, TLS and TCP reach a forward proxy as CONNECT host:port (https_proxy),
            # captured ones by SNI or address: the connection goes where a tls route for
            # that name sends it (the host standing in for the SNI), else a tcp route, else
            # the service; the workload's own TLS passes through.
            tunnel = (tls_route_for(vss, MESH, port.number, svc.host, by_host)
                      or tcp_route_for(vss, MESH, port.number, by_host)
                      or (WeightedCluster(names.cluster_name(svc.host, port.number), 100),))
            tunnels.append(Tunnel(svc.host, port.number, port.protocol, svc.addresses, tunnel))
            continue
        routes = routes_for(vss, MESH, port.number, by_host, snap.memo) or [_default_route(svc, port.number)]
        http_ports.append(port.number)
        vhosts.append(VirtualHost(names.virtual_host_name(svc.host, port.number), _domains(svc.host, port.number),
                                  tuple(routes)))
    return _ServicePart(tuple(vhosts), tuple(tunnels), tuple(http_ports))


def _catch_all(mode: str) -> VirtualHost:
    """Istio's catch-all virtual host, for plain requests and CONNECT tunnels alike."""
    if mode == "ALLOW_ANY":
        route = Route(names.ALLOW_ANY_ROUTE, "/", (WeightedCluster(names.PASSTHROUGH_CLUSTER, 100),))
        return VirtualHost(names.ALLOW_ANY_ROUTE, ("*",), (route,), connect_clusters=route.clusters)
    return VirtualHost(names.BLOCK_ALL_ROUTE, ("*",), (Route(names.BLOCK_ALL_ROUTE, "/", (), direct_status=502),),
                       connect_status=502)


def translate_sidecar(snap: Snapshot, workload: WorkloadProxy, proxy_port: int,
                      capture_netns: str | None = None) -> tuple[ProxyConfig, list[Diagnostic]]:
    """One route table with a virtual host per imported HTTP service port and the catch-all
    virtual host last, served by the forward-proxy listener, or with ``capture_netns`` by the
    captured ports' listeners inside that network namespace."""
    scope = sidecar_scope(snap, workload)
    services = scope.services
    by_host = {s.host: s for s in services}
    vhosts: list[VirtualHost] = []
    tunnels: list[Tunnel] = []
    http_ports: set[int] = set()
    for svc in services:
        if snap.memo is None:
            part = _service_part(snap, scope, workload.namespace, svc, by_host)
        else:
            # One service's virtual hosts and tunnels change only with what its host's
            # resources and the destinations its routes read say (translate.memo).
            key = ("sidecar service", workload.namespace, workload.name, id(svc))
            part = snap.memo.fragment_reading(snap.generation, key, (svc.host,), svc, by_host,
                                              partial(_service_part, snap, scope, workload.namespace, svc))
        vhosts += part.vhosts
        tunnels += part.tunnels
        http_ports.update(part.http_ports)
    vs_only = _virtual_service_only_hosts(snap, scope, workload.namespace, {v.name for v in vhosts}, by_host)
    http_ports.update(p for _, p in vs_only)
    vhosts += [v for v, _ in vs_only]
    have = {v.name for v in vhosts} | {names.virtual_host_name(t.host, t.port) for t in tunnels}
    tunnels += _tls_route_only_hosts(snap, scope, workload.namespace, have, by_host)
    vhosts += [VirtualHost(names.virtual_host_name(t.host, t.port), (f"{t.host}:{t.port}",), (),
                           connect_clusters=t.clusters) for t in tunnels]
    vhosts.append(_catch_all(scope.outbound_mode))
    # Only the clusters its routes and tunnels reach, unless the mesh asks for Istio's set (the
    # capture listeners are built from the same tunnels and route table, plus the catch-all
    # clusters added below).
    routed = routed_service_ports(vhosts) if snap.mesh.sidecar_clusters == "routed" else None
    seen = services if routed is None else [s for s in services if any((s.host, p.number) in routed for p in s.ports)]
    clusters: list[Cluster] = build_clusters(snap, seen, workload.namespace, original_dst=capture_netns is not None)
    if routed is not None:
        clusters = [c for c in clusters if service_port(c.name) in routed]
    listener = HttpListener(
        name=names.listener_name(workload.address, proxy_port),
        address=workload.address, port=proxy_port,
        route_config=names.HTTP_PROXY_ROUTE, stat_prefix="outbound_http_proxy",
        access_log=snap.mesh.access_log,
        dynamic_forward_proxy=(scope.outbound_mode == "ALLOW_ANY" and capture_netns is None) or any(
            c.discovery is DiscoveryType.DYNAMIC_FORWARD_PROXY for c in clusters), connect=True,
        fault_injection=any(r.fault for v in vhosts for r in v.routes),
    )
    clusters.append(blackhole_cluster())
    if scope.outbound_mode == "ALLOW_ANY":
        clusters.append(passthrough_cluster(original_dst=capture_netns is not None))
    listeners: tuple[HttpListener, ...] = (listener,)
    tcp_listeners: list[TlsPassthroughListener] = []
    captured: list[CaptureListener | DnsListener] = []
    if capture_netns is not None:
        settings = CaptureSettings(capture_netns, scope.outbound_mode, snap.mesh.access_log, snap.mesh.dns.parsed())
        http_listeners, tcp_listeners, captured = capture_listeners(settings, listener, http_ports, tunnels, services)
        tcp_listeners = with_sni_dynamic_ports(tcp_listeners, clusters, snap.mesh)
        listeners = tuple(http_listeners)
    diags = [Diagnostic("EG0111", Severity.WARNING,
                        f"AuthorizationPolicy {ap.namespace}/{ap.name} selects this workload's sidecar, which has no "
                        "inbound traffic in exitgate: it enforces nothing here; select the egress gateway instead",
                        resource=ap.ref, field="spec.selector" if ap.spec.selector is not None else None)
             for ap in policies_on_sidecar(snap.authorization_policies, workload.namespace, workload.labels,
                                           snap.mesh.root_namespace)]
    pc = ProxyConfig(listeners, (RouteConfig(names.HTTP_PROXY_ROUTE, tuple(vhosts)),), tuple(clusters),
                     secret_names(listeners, clusters), tls_passthrough_listeners=tuple(tcp_listeners),
                     capture_listeners=tuple(captured))
    source = workload_labels(workload.name, workload.namespace, workload.labels, workload.identity[1],
                             snap.mesh.trust_domain)
    return with_telemetry(pc, Telemetry(source, host_fallback=True), log_format(snap.mesh)), diags


def _selected_mesh_virtual_services(snap: Snapshot, scope: SidecarScope) -> Iterator[BoundVirtualService]:
    """The mesh VirtualServices some egress listener of the sidecar selects, in Istio's order."""
    selected = set().union(*(e.selected for e in scope.listeners))
    return (b for b in snap.virtual_services_in(MESH) if id(b.resource) in selected)


def _virtual_service_only_hosts(snap: Snapshot, scope: SidecarScope, proxy_ns: str, have: set[str],
                                by_host: dict[str, Service]) -> list[tuple[VirtualHost, int]]:
    """Virtual hosts for a VirtualService host on a port its service does not declare, e.g.
    ``http://my-nginx.mesh-external.svc.cluster.local`` (port 80) when the Kubernetes Service
    has only 443: Istio gives every HTTP port a virtual host for each mesh VirtualService host,
    and the route decides where the request goes."""
    out: list[tuple[VirtualHost, int]] = []
    for b in _selected_mesh_virtual_services(snap, scope):
        candidates = (_mesh_virtual_hosts(b) if snap.memo is None else
                      snap.memo.value(("mesh virtual hosts", id(b)), b, partial(_mesh_virtual_hosts, b)))
        for h, port, name in candidates:
            if name in have:
                continue
            routes = routes_for(_scoped(snap, scope, h, port, proxy_ns), MESH, port, by_host, snap.memo)
            if routes:
                out.append((VirtualHost(name, _domains(h, port), tuple(routes)), port))
                have.add(name)
    return out


def _mesh_virtual_hosts(b: BoundVirtualService) -> tuple[tuple[str, int, str], ...]:
    """(host, port, virtual host name) for each exact host of a mesh VirtualService and each
    port its mesh HTTP routes match (80 for a route without a port)."""
    vs = b.resource
    ports: set[int] = set()
    for http in vs.spec.http or []:
        for m in http.match or []:
            contexts = match_contexts(m.gateways, vs.namespace)
            if contexts is None or MESH in contexts:
                ports.add(m.port if m.port else 80)
        if not http.match:
            ports.add(80)
    return tuple((h, port, names.virtual_host_name(h, port)) for h in b.hosts if "*" not in h for port in sorted(ports))


def _tls_route_only_hosts(snap: Snapshot, scope: SidecarScope, proxy_ns: str, have: set[str],
                          by_host: dict[str, Service]) -> list[Tunnel]:
    """Tunnels for the SNI hosts of mesh ``tls`` routes that no service declares (Istio builds
    the sidecar's TLS listener from the VirtualService alone, e.g. ``*.wikipedia.org`` routed to
    the egress gateway)."""
    out: list[Tunnel] = []
    for b in _selected_mesh_virtual_services(snap, scope):
        vs = b.resource
        for route in vs.spec.tls or []:
            for m in route.match:
                contexts = match_contexts(m.gateways, vs.namespace)
                if m.port is None or (contexts is not None and MESH not in contexts):
                    continue
                for sni in m.sni_hosts:
                    name = names.virtual_host_name(sni, m.port)
                    tunnel = tls_route_for([vs], MESH, m.port, sni, by_host)
                    if name in have or tunnel is None:
                        continue
                    out.append(Tunnel(sni, m.port, "TLS", (), tunnel))
                    have.add(name)
    return out
