"""VirtualService ``tls`` routes: where a TLS connection goes by its SNI, without terminating it.

Two places use them, as in Istio's "Egress Gateways" task for HTTPS:

* the sidecar, for a workload's HTTPS (a CONNECT host:port tunnel here, the SNI being the
  tunnel's host): ``mesh`` matches send it on, e.g. to the egress gateway's subset;
* a Gateway server with ``tls.mode: PASSTHROUGH``: a filter chain per SNI, proxied as TCP to the
  route's destination (the external service's TLS port).

Istio's rules: a match applies in its ``gateways`` (the VirtualService's own when none), on its
``port`` (any when none), when one of its ``sniHosts`` matches; the first matching route wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from exitgate import names
from exitgate.api.networking import GatewaySpec, Server, TCPRoute, TLSRoute, VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.ir import Cluster, DiscoveryType, DownstreamTls, SniChain, TlsPassthroughListener, WeightedCluster
from exitgate.mesh import GatewayProxy, MeshConfig
from exitgate.translate.registry import Service, fqdn, host_matches
from exitgate.translate.routing import match_contexts, server_host_binds
from exitgate.translate.snapshot import Snapshot


def _clusters(route: TLSRoute | TCPRoute, vs_ns: str, incoming: int, services: Mapping[str, Service]) -> tuple[WeightedCluster, ...]:
    out = []
    for d in route.route:
        host = fqdn(d.destination.host, vs_ns)
        port = d.destination.port.number if d.destination.port else None
        if port is None:
            # Istio: the service's only port, else the port the connection came in on.
            svc = services.get(host)
            port = svc.ports[0].number if svc is not None and len(svc.ports) == 1 else incoming
        weight = d.weight if d.weight is not None else (100 if len(route.route) == 1 else 0)
        out.append(WeightedCluster(names.cluster_name(host, port, d.destination.subset or ""), weight))
    return tuple(out)


def _matching_snis(route: TLSRoute, vs_ns: str, context: str, port: int) -> list[str]:
    """The SNI hosts of the route's matches that apply in ``context`` on ``port``."""
    out: list[str] = []
    for m in route.match:
        contexts = match_contexts(m.gateways, vs_ns)
        if contexts is not None and context not in contexts:
            continue
        if m.port is not None and m.port != port:
            continue
        out += [fqdn(h, vs_ns) for h in m.sni_hosts]
    return out


def tls_route_for(vss: Sequence[Resource[VirtualServiceSpec]], context: str, port: int, sni: str,
                  services: Mapping[str, Service]) -> tuple[WeightedCluster, ...] | None:
    """The destinations of the first ``tls`` route that takes SNI ``sni`` on ``port``."""
    for vs in vss:
        for route in vs.spec.tls or []:
            if any(host_matches(h, sni) for h in _matching_snis(route, vs.namespace, context, port)):
                return _clusters(route, vs.namespace, port, services)
    return None


def tcp_route_for(vss: Sequence[Resource[VirtualServiceSpec]], context: str, port: int,
                  services: Mapping[str, Service]) -> tuple[WeightedCluster, ...] | None:
    """The destinations of the first ``tcp`` route that applies in ``context`` on ``port``."""
    for vs in vss:
        for route in vs.spec.tcp or []:
            if _tcp_matches(route, vs.namespace, context, port):
                return _clusters(route, vs.namespace, port, services)
    return None


def with_sni_dynamic_ports(listeners: Sequence[TlsPassthroughListener], clusters: Sequence[Cluster],
                           mesh: MeshConfig) -> list[TlsPassthroughListener]:
    """Chains that pass TLS through to a cluster resolving whichever host was asked (DYNAMIC_DNS,
    or NONE without an original destination) resolve the SNI first, then connect to the port
    the route names (``externalPortMap`` applied, as for every endpoint)."""
    dynamic = {c.name for c in clusters if c.discovery is DiscoveryType.DYNAMIC_FORWARD_PROXY}
    out = []
    for lst in listeners:
        chains = []
        for chain in lst.chains:
            hit = next((w.cluster for w in chain.clusters if w.cluster in dynamic), None)
            chains.append(replace(chain, sni_dynamic_port=mesh.external_port(names.parse_cluster_name(hit).port,
                                                                             names.parse_cluster_name(hit).host))
                          if hit is not None and chain.server_names else chain)
        out.append(replace(lst, chains=tuple(chains)))
    return out


def _server_names(server: Server) -> list[str]:
    # A server host's namespace part restricts which VirtualServices bind; the SNI is the host.
    return [h.partition("/")[2] if "/" in h else h for h in server.hosts]


def _bound_tcp_route(snap: Snapshot, gw: Resource[GatewaySpec], server: Server,
                     services: Mapping[str, Service]) -> tuple[WeightedCluster, ...] | None:
    """The destinations of the first ``tcp`` route, in Istio's order, of a VirtualService bound
    to ``server`` that applies on its port."""
    context = f"{gw.namespace}/{gw.name}"
    for b in snap.virtual_services_in(context):
        vs = b.resource
        if not any(server_host_binds(sh, gw.namespace, vs.namespace, h) for sh in server.hosts for h in b.hosts):
            continue
        for route in vs.spec.tcp or []:
            if _tcp_matches(route, vs.namespace, context, server.port.number):
                return _clusters(route, vs.namespace, server.port.number, services)
    return None


def terminated_tcp_listener(snap: Snapshot, gateway: GatewayProxy, target: int,
                            servers: Sequence[tuple[Resource[GatewaySpec], Server]],
                            tls: DownstreamTls) -> TlsPassthroughListener:
    """The listener of TLS servers with ISTIO_MUTUAL on one port: the sidecar's mTLS (whose SNI
    names the server's host) is terminated, and what it carries — the workload's own TLS — goes
    on as TCP by the first ``tcp`` route bound to the server for that port."""
    services = {s.host: s for s in snap.services_for(gateway.namespace)}
    chains: list[SniChain] = []
    claimed: set[str] = set()
    for gw, server in servers:
        snis = [h for h in _server_names(server) if h not in claimed]
        clusters = _bound_tcp_route(snap, gw, server, services)
        if snis and clusters:
            claimed.update(snis)
            chains.append(SniChain(names.virtual_host_name(snis[0], server.port.number), tuple(snis), clusters))
    return TlsPassthroughListener(name=names.listener_name(gateway.address, target), address=gateway.address,
                                  port=target, stat_prefix=f"outbound_{target}", chains=tuple(chains),
                                  access_log=snap.mesh.access_log, tls=tls)


def tcp_listener(snap: Snapshot, gateway: GatewayProxy, target: int,
                 servers: Sequence[tuple[Resource[GatewaySpec], Server]]) -> TlsPassthroughListener:
    """The listener of plain TCP servers on one port: nothing tells connections apart, so the
    first ``tcp`` route bound to one of the servers takes them all (Istio's order)."""
    services = {s.host: s for s in snap.services_for(gateway.namespace)}
    chains: tuple[SniChain, ...] = ()
    for gw, server in servers:
        clusters = _bound_tcp_route(snap, gw, server, services)
        if clusters:
            chains = (SniChain(names.virtual_host_name(_server_names(server)[0], server.port.number), (), clusters),)
            break
    return TlsPassthroughListener(name=names.listener_name(gateway.address, target), address=gateway.address,
                                  port=target, stat_prefix=f"outbound_{target}", chains=chains,
                                  access_log=snap.mesh.access_log)


def _tcp_matches(route: TCPRoute, vs_ns: str, context: str, port: int) -> bool:
    if not route.match:
        return True
    for m in route.match:
        contexts = match_contexts(m.gateways, vs_ns)
        if (contexts is None or context in contexts) and (m.port is None or m.port == port):
            return True
    return False


def passthrough_listener(snap: Snapshot, gateway: GatewayProxy, target: int,
                         servers: Sequence[tuple[Resource[GatewaySpec], Server]]) -> TlsPassthroughListener:
    """The listener of PASSTHROUGH servers on one port: a chain for each SNI a bound
    VirtualService routes (the first route to claim a name keeps it, as Istio's order)."""
    services = {s.host: s for s in snap.services_for(gateway.namespace)}
    chains: list[SniChain] = []
    claimed: set[str] = set()
    for gw, server in servers:
        context = f"{gw.namespace}/{gw.name}"
        for b in snap.virtual_services_in(context):
            vs = b.resource
            for route in vs.spec.tls or []:
                snis = [h for h in _matching_snis(route, vs.namespace, context, server.port.number)
                        if h not in claimed and any(server_host_binds(sh, gw.namespace, vs.namespace, h)
                                                    for sh in server.hosts)]
                if not snis:
                    continue
                claimed.update(snis)
                chains.append(SniChain(names.virtual_host_name(snis[0], server.port.number), tuple(snis),
                                       _clusters(route, vs.namespace, server.port.number, services)))
    return TlsPassthroughListener(name=names.listener_name(gateway.address, target), address=gateway.address,
                                  port=target, stat_prefix=f"outbound_{target}", chains=tuple(chains),
                                  access_log=snap.mesh.access_log)
