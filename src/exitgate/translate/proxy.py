"""Snapshot x proxy -> IR: the whole configuration of one sidecar or one egress gateway.

Pure: resources and the mesh inventory in, an ``ir.ProxyConfig`` and diagnostics out.
"""

from __future__ import annotations

from collections.abc import Sequence

from exitgate import names
from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.networking import (
    ClientTLSSettings,
    DestinationRuleSpec,
    GatewaySpec,
    Server,
    VirtualServiceSpec,
)
from exitgate.api.resources import Resource
from exitgate.ir import (
    Cluster,
    DownstreamTls,
    HttpListener,
    ProxyConfig,
    Route,
    RouteConfig,
    TlsMode,
    VirtualHost,
    WeightedCluster,
)
from exitgate.mesh import GatewayProxy, MeshConfig, WorkloadProxy
from exitgate.translate.registry import (
    Service,
    build_registry,
    find_destination_rule,
    fqdn,
    host_matches,
    visible_services,
)
from exitgate.translate.credentials import ca_of
from exitgate.translate.routing import MESH, routes_for, virtual_services_for, vs_gateways
from exitgate.translate.tls import effective_policy, upstream_tls


def _default_route(service: Service, port: int) -> Route:
    return Route("default", "/", (WeightedCluster(names.cluster_name(service.host, port), 100),))


def build_clusters(resources: Sequence[Resource], services: Sequence[Service], proxy_ns: str, mesh: MeshConfig) -> list[Cluster]:
    """Every cluster of every service the proxy sees: one per port, one per port and subset."""
    clusters: list[Cluster] = []
    auto_mtls = istio_mutual_gateway_ports(resources, mesh)
    for svc in services:
        dr_res = find_destination_rule(resources, svc.host, proxy_ns, svc.namespace, mesh.root_namespace)
        dr = dr_res.spec if dr_res is not None else None
        assert dr is None or isinstance(dr, DestinationRuleSpec)
        subsets = [""] + [s.name for s in (dr.subsets or [])] if dr else [""]
        for port in svc.ports:
            for subset in subsets:
                tls_settings, lb = effective_policy(dr, subset, port.number)
                if tls_settings is None and port.number in auto_mtls.get(svc.host, ()):
                    # Istio's auto mTLS: a gateway port served with ISTIO_MUTUAL is reached with
                    # ISTIO_MUTUAL when no DestinationRule says otherwise.
                    tls_settings = ClientTLSSettings(mode="ISTIO_MUTUAL")
                tls = upstream_tls(tls_settings, svc, port.number, subset,
                                   lambda name: ca_of(resources, proxy_ns, name) is not None)
                http2 = port.protocol in ("HTTP2", "GRPC") or (tls is not None and tls.mode is TlsMode.ISTIO_MUTUAL)
                clusters.append(Cluster(
                    name=names.cluster_name(svc.host, port.number, subset),
                    discovery=svc.discovery,
                    endpoints=port.endpoints,
                    lb_policy=lb,
                    tls=tls,
                    http2=http2,
                    # Connections carrying a mesh certificate are bounded so rotation takes effect.
                    max_connection_duration_s=600.0 if tls is not None and tls.client_cert_secret else None,
                ))
    return clusters


def istio_mutual_gateway_ports(resources: Sequence[Resource], mesh: MeshConfig) -> dict[str, set[int]]:
    """Service host -> the gateway service ports whose Gateway servers use ISTIO_MUTUAL."""
    out: dict[str, set[int]] = {}
    for g in mesh.gateways:
        for gw in selected_gateways(resources, g):
            assert isinstance(gw.spec, GatewaySpec)
            for server in gw.spec.servers:
                if server.tls is not None and server.tls.mode == "ISTIO_MUTUAL":
                    out.setdefault(g.service_host, set()).add(server.port.number)
    return out


def _secret_names(listeners: Sequence[HttpListener], clusters: Sequence[Cluster]) -> tuple[str, ...]:
    found: list[str] = []
    for c in clusters:
        if c.tls is not None:
            found += [s for s in (c.tls.client_cert_secret, c.tls.validation_secret) if s]
    for lst in listeners:
        if lst.tls is not None:
            found += [s for s in (lst.tls.cert_secret, lst.tls.validation_secret) if s]
    return tuple(sorted(set(found)))


def translate_sidecar(resources: Sequence[Resource], mesh: MeshConfig, workload: WorkloadProxy,
                      proxy_port: int) -> tuple[ProxyConfig, list[Diagnostic]]:
    """The sidecar is the workload's HTTP forward proxy: one listener, one route table
    (Istio's ``http_proxy``) with a virtual host per HTTP service port."""
    services = visible_services(build_registry(resources, mesh), workload.namespace)
    by_host = {s.host: s for s in services}
    vhosts: list[VirtualHost] = []
    for svc in services:
        vss = virtual_services_for(resources, MESH, svc.host, workload.namespace)
        for port in svc.ports:
            if not port.is_http:
                continue
            routes = routes_for(vss, MESH, port.number, by_host) or [_default_route(svc, port.number)]
            domains = (svc.host, f"{svc.host}:{port.number}") if port.number == 80 else (f"{svc.host}:{port.number}",)
            vhosts.append(VirtualHost(names.virtual_host_name(svc.host, port.number), domains, tuple(routes)))
    vhosts += _virtual_service_only_hosts(resources, workload.namespace, {v.name for v in vhosts}, by_host)
    # Istio's REGISTRY_ONLY answer for a host no service declares.
    vhosts.append(VirtualHost("block_all", ("*",), (Route("block_all", "/", (), direct_status=502),)))
    listener = HttpListener(
        name=names.listener_name(workload.address, proxy_port),
        address=workload.address, port=proxy_port,
        route_config=names.HTTP_PROXY_ROUTE, stat_prefix="outbound_http_proxy",
        access_log=mesh.access_log,
    )
    clusters = build_clusters(resources, services, workload.namespace, mesh)
    listeners = (listener,)
    return ProxyConfig(listeners, (RouteConfig(names.HTTP_PROXY_ROUTE, tuple(vhosts)),), tuple(clusters),
                       _secret_names(listeners, clusters)), []


def _virtual_service_only_hosts(resources: Sequence[Resource], proxy_ns: str, have: set[str],
                                by_host: dict[str, Service]) -> list[VirtualHost]:
    """Virtual hosts for a VirtualService host on a port its service does not declare, e.g.
    ``http://my-nginx.mesh-external.svc.cluster.local`` (port 80) when the Kubernetes Service
    has only 443: Istio gives every HTTP port a virtual host for each mesh VirtualService host,
    and the route decides where the request goes."""
    out: list[VirtualHost] = []
    for vs in sorted((r for r in resources if r.kind == "VirtualService"), key=lambda r: (r.namespace, r.name)):
        assert isinstance(vs.spec, VirtualServiceSpec)
        if MESH not in vs_gateways(vs):
            continue
        ports = {m.port for h in vs.spec.http or [] for m in h.match or [] if m.port and
                 (not m.gateways or MESH in m.gateways)}
        if any(not h.match or any(m.port is None for m in h.match) for h in vs.spec.http or []):
            ports.add(80)
        for host in vs.spec.hosts:
            h = fqdn(host, vs.namespace)
            if "*" in h:
                continue
            for port in sorted(ports):
                name = names.virtual_host_name(h, port)
                if name in have:
                    continue
                routes = routes_for(virtual_services_for(resources, MESH, h, proxy_ns), MESH, port, by_host)
                if routes:
                    domains = (h, f"{h}:{port}") if port == 80 else (f"{h}:{port}",)
                    out.append(VirtualHost(name, domains, tuple(routes)))
                    have.add(name)
    return out


def selected_gateways(resources: Sequence[Resource], gateway: GatewayProxy) -> list[Resource]:
    out = []
    for r in resources:
        if r.kind == "Gateway":
            assert isinstance(r.spec, GatewaySpec)
            if all(gateway.labels.get(k) == v for k, v in r.spec.selector.items()):
                out.append(r)
    return sorted(out, key=lambda r: (r.namespace, r.name))


def _server_hosts(server: Server, gw_ns: str) -> list[str]:
    # "ns/host" restricts which namespaces' VirtualServices may bind; exitgate keeps the host part.
    return [h.split("/", 1)[1] if "/" in h else h for h in server.hosts]


def translate_gateway(resources: Sequence[Resource], mesh: MeshConfig, gateway: GatewayProxy) -> tuple[ProxyConfig, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    services = visible_services(build_registry(resources, mesh), gateway.namespace)
    by_host = {s.host: s for s in services}
    # target port -> [(Gateway resource, server)]
    by_port: dict[int, list[tuple[Resource, Server]]] = {}
    for gw in selected_gateways(resources, gateway):
        assert isinstance(gw.spec, GatewaySpec)
        for server in gw.spec.servers:
            mapping = next((p for p in gateway.ports if p.port == server.port.number), None)
            if mapping is None:
                diags.append(Diagnostic(dx.NOT_FOUND, Severity.WARNING,
                                        f"gateway {gateway.name}.{gateway.namespace} has no service port {server.port.number}; "
                                        "the server listens on that port number directly", resource=gw.ref, field="spec.servers.port"))
            target = mapping.target_port if mapping else server.port.number
            by_port.setdefault(target, []).append((gw, server))
    listeners: list[HttpListener] = []
    route_configs: list[RouteConfig] = []
    for target, servers in sorted(by_port.items()):
        first_gw, first = servers[0]
        tls_modes = {s.tls.mode if s.tls else None for _, s in servers}
        if len(tls_modes) > 1:
            diags.append(Diagnostic(dx.UNSUPPORTED, Severity.ERROR,
                                    f"servers on port {first.port.number} mix TLS settings; exitgate supports one per port",
                                    resource=first_gw.ref, field="spec.servers"))
            continue
        route_name = names.gateway_route_name(first.port.protocol, first.port.number, first.port.name,
                                              first_gw.name, first_gw.namespace)
        vhosts: dict[str, VirtualHost] = {}
        for gw, server in servers:
            context = f"{gw.namespace}/{gw.name}"
            for pattern in _server_hosts(server, gw.namespace):
                for vs in _vs_for_pattern(resources, context, pattern):
                    assert isinstance(vs.spec, VirtualServiceSpec)
                    for host in vs.spec.hosts or []:
                        h = fqdn(host, vs.namespace)
                        if not (host_matches(pattern, h) or host_matches(h, pattern)) or h in vhosts:
                            continue
                        routes = routes_for(virtual_services_for(resources, context, h, gateway.namespace),
                                            context, server.port.number, by_host)
                        if routes:
                            vhosts[h] = VirtualHost(names.virtual_host_name(h, server.port.number), (h,), tuple(routes))
        route_configs.append(RouteConfig(route_name, tuple(vhosts.values())))
        tls = None
        if first.tls is not None and first.tls.mode == "ISTIO_MUTUAL":
            tls = DownstreamTls(cert_secret=names.WORKLOAD_CERT_SECRET, validation_secret=names.ROOT_CA_SECRET,
                                require_client_cert=True, spiffe_trust_domain=mesh.trust_domain)
        listeners.append(HttpListener(
            name=names.listener_name(gateway.address, target), address=gateway.address, port=target,
            route_config=route_name, stat_prefix=f"outbound_{target}", tls=tls, access_log=mesh.access_log,
            ignore_port_in_host=True,
        ))
    clusters = build_clusters(resources, services, gateway.namespace, mesh)
    return ProxyConfig(tuple(listeners), tuple(route_configs), tuple(clusters),
                       _secret_names(listeners, clusters)), diags


def _vs_for_pattern(resources: Sequence[Resource], context: str, pattern: str) -> list[Resource]:
    out = []
    for r in resources:
        if r.kind == "VirtualService" and context in vs_gateways(r):
            assert isinstance(r.spec, VirtualServiceSpec)
            if any(host_matches(pattern, fqdn(h, r.namespace)) or host_matches(fqdn(h, r.namespace), pattern)
                   for h in r.spec.hosts or []):
                out.append(r)
    return sorted(out, key=lambda r: (r.namespace, r.name))
