"""Snapshot x gateway proxy -> the IR of an egress gateway: a listener per target port of the
Gateway servers that select it, the VirtualServices those servers let bind (Istio's
``namespace/host`` rule), its clusters, and the AuthorizationPolicies that apply to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial

from exitgate import names
from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.networking import GatewaySpec, Server
from exitgate.api.networking.common import TCP_PROTOCOLS
from exitgate.api.resources import Resource
from exitgate.ir import (DiscoveryType, DownstreamTls, HttpListener, ProxyConfig, RbacFilter, RouteConfig,
                         Telemetry, TlsPassthroughListener, VirtualHost)
from exitgate.mesh import GatewayProxy
from exitgate.translate.authz import gateway_rbac
from exitgate.translate.clusters import build_clusters
from exitgate.translate.proxy import secret_names
from exitgate.translate.registry import Service
from exitgate.translate.routing import routes_for, server_host_binds
from exitgate.translate.snapshot import Snapshot
from exitgate.translate.telemetry import log_format, with_telemetry, workload_labels
from exitgate.translate.tls_routes import (
    passthrough_listener, tcp_listener, terminated_tcp_listener, with_sni_dynamic_ports,
)


def _servers_by_port(snap: Snapshot, gateway: GatewayProxy,
                     diags: list[Diagnostic]) -> dict[int, list[tuple[Resource[GatewaySpec], Server]]]:
    """Target (container) port -> the (Gateway, server) pairs listening there."""
    by_port: dict[int, list[tuple[Resource[GatewaySpec], Server]]] = {}
    for gw in snap.gateways_selecting(gateway):
        for server in gw.spec.servers:
            mapping = next((p for p in gateway.ports if p.port == server.port.number), None)
            if mapping is None:
                diags.append(Diagnostic(dx.NOT_FOUND, Severity.WARNING,
                                        f"gateway {gateway.name}.{gateway.namespace} has no service port {server.port.number}; "
                                        "the server listens on that port number directly", resource=gw.ref, field="spec.servers.port"))
            target = mapping.target_port if mapping else server.port.number
            by_port.setdefault(target, []).append((gw, server))
    return by_port


def _virtual_hosts(snap: Snapshot, gateway: GatewayProxy,
                   servers: list[tuple[Resource[GatewaySpec], Server]]) -> list[VirtualHost]:
    by_host = {s.host: s for s in snap.services_for(gateway.namespace)}
    vhosts: dict[str, VirtualHost] = {}
    for gw, server in servers:
        context = f"{gw.namespace}/{gw.name}"
        # A server for "*" (or "*/*") binds every host of every namespace: no check per host.
        binds_all = any(sh in ("*", "*/*") for sh in server.hosts)
        for b in snap.virtual_services_in(context):
            for h in b.hosts:
                if h in vhosts or not (binds_all or any(server_host_binds(sh, gw.namespace, b.resource.namespace, h)
                                                        for sh in server.hosts)):
                    continue
                if snap.memo is None:
                    vhost = _virtual_host(snap, gateway, gw, server, h, by_host)
                else:
                    key = ("gateway virtual host", gateway.namespace, context, id(server), h)
                    vhost = snap.memo.fragment_reading(snap.generation, key, (h,), server, by_host,
                                                       partial(_virtual_host, snap, gateway, gw, server, h))
                if vhost is not None:
                    vhosts[h] = vhost
    return list(vhosts.values())


def _virtual_host(snap: Snapshot, gateway: GatewayProxy, gw: Resource[GatewaySpec], server: Server, h: str,
                  by_host: Mapping[str, Service]) -> VirtualHost | None:
    """Host ``h``'s virtual host on ``server``: the routes of the VirtualServices bound to it."""
    context = f"{gw.namespace}/{gw.name}"
    bound = [vs for vs in snap.virtual_services_for(context, h, gateway.namespace)
             if any(server_host_binds(sh, gw.namespace, vs.namespace, h) for sh in server.hosts)]
    routes = routes_for(bound, context, server.port.number, by_host, snap.memo)
    return VirtualHost(names.virtual_host_name(h, server.port.number), (h,), tuple(routes)) if routes else None


def _istio_mutual(snap: Snapshot) -> DownstreamTls:
    """The gateway's side of ISTIO_MUTUAL: its SPIFFE certificate, and only this trust domain's
    SPIFFE identities may connect."""
    return DownstreamTls(cert_secret=names.WORKLOAD_CERT_SECRET, validation_secret=names.ROOT_CA_SECRET,
                         require_client_cert=True, spiffe_trust_domain=snap.mesh.trust_domain)


def translate_gateway(snap: Snapshot, gateway: GatewayProxy) -> tuple[ProxyConfig, list[Diagnostic]]:
    diags: list[Diagnostic] = []
    rbac, authz_diags = gateway_rbac(snap.authorization_policies, gateway.namespace, gateway.labels,
                                     snap.mesh.root_namespace, snap.mesh.trust_domain)
    diags += authz_diags
    listeners: list[HttpListener] = []
    passthrough: list[TlsPassthroughListener] = []
    tcp_rbac: tuple[RbacFilter, ...] | None = None
    route_configs: list[RouteConfig] = []
    for target, servers in sorted(_servers_by_port(snap, gateway, diags).items()):
        first_gw, first = servers[0]
        tls_modes = {"PASSTHROUGH" if s.is_passthrough else s.tls.mode if s.tls else None for _, s in servers}
        if len(tls_modes) > 1:
            diags.append(Diagnostic(dx.UNSUPPORTED, Severity.ERROR,
                                    f"servers on port {first.port.number} mix TLS settings; exitgate supports one per port",
                                    resource=first_gw.ref, field="spec.servers"))
            continue
        tcp_after_mtls = first.port.protocol == "TLS" and first.tls is not None and first.tls.mode == "ISTIO_MUTUAL"
        plain_tcp = first.port.protocol in TCP_PROTOCOLS
        if first.is_passthrough or tcp_after_mtls or plain_tcp:
            if plain_tcp:
                lst = tcp_listener(snap, gateway, target, servers)
            elif tcp_after_mtls:
                lst = terminated_tcp_listener(snap, gateway, target, servers, _istio_mutual(snap))
            else:
                lst = passthrough_listener(snap, gateway, target, servers)
            if lst.chains:  # Envoy takes no listener without a chain; without one, nothing listens
                if rbac and tcp_rbac is None:
                    # Istio's BuildTCP: the same policies as RBAC network filters, HTTP-only
                    # attributes failing closed (translate/authz.py). Built once per gateway.
                    tcp_rbac, tcp_diags = gateway_rbac(snap.authorization_policies, gateway.namespace,
                                                       gateway.labels, snap.mesh.root_namespace,
                                                       snap.mesh.trust_domain, tcp=True)
                    diags += [d for d in tcp_diags if d not in diags]
                passthrough.append(replace(lst, rbac=tcp_rbac or ()))
            continue
        route_name = names.gateway_route_name(first.port.protocol, first.port.number, first.port.name,
                                              first_gw.name, first_gw.namespace)
        route_configs.append(RouteConfig(route_name, tuple(_virtual_hosts(snap, gateway, servers))))
        tls = _istio_mutual(snap) if first.tls is not None and first.tls.mode == "ISTIO_MUTUAL" else None
        listeners.append(HttpListener(
            name=names.listener_name(gateway.address, target), address=gateway.address, port=target,
            route_config=route_name, stat_prefix=f"outbound_{target}", tls=tls, access_log=snap.mesh.access_log,
            ignore_port_in_host=True, rbac=rbac,
            fault_injection=any(r.fault for v in route_configs[-1].virtual_hosts for r in v.routes),
        ))
    clusters = build_clusters(snap, snap.services_for(gateway.namespace), gateway.namespace)
    if any(c.discovery is DiscoveryType.DYNAMIC_FORWARD_PROXY for c in clusters):
        # Routes to hosts resolved per request (resolution NONE, DYNAMIC_DNS) need the filter.
        listeners = [replace(lst, dynamic_forward_proxy=True) for lst in listeners]
        passthrough = with_sni_dynamic_ports(passthrough, clusters, snap.mesh)
    pc = ProxyConfig(tuple(listeners), tuple(route_configs), tuple(clusters),
                     secret_names([*listeners, *passthrough], clusters), tls_passthrough_listeners=tuple(passthrough))
    # Istio's gateways report as the client (reporter="source") and, without a service, name
    # the destination "unknown" rather than by the request's Host.
    source = workload_labels(gateway.name, gateway.namespace, gateway.labels, gateway.identity[1], snap.mesh.trust_domain)
    return with_telemetry(pc, Telemetry(source, host_fallback=False), log_format(snap.mesh)), diags
