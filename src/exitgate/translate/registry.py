"""The service registry a proxy sees: ServiceEntries plus the mesh's Kubernetes-style services
(gateways, services outside the mesh), with their ports, endpoints and identities.

Also the visibility rules shared by the translator and the analyzers: host names relative to a
namespace, host wildcards and ``exportTo``. ``translate.snapshot`` indexes by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from exitgate import names
from exitgate.api.networking import HTTP_PROTOCOLS, ServiceEntrySpec
from exitgate.api.resources import Resource
from exitgate.ir import DiscoveryType, Endpoint, WorkloadLabels
from exitgate.mesh import MeshConfig
from exitgate.translate.memo import TranslationMemo
from exitgate.translate.telemetry import workload_labels


@dataclass(frozen=True)
class ServicePort:
    number: int
    protocol: str
    name: str
    # Where connections for this port really go (address, port) per endpoint.
    endpoints: tuple[Endpoint, ...]

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS


@dataclass(frozen=True)
class Service:
    host: str
    namespace: str
    discovery: DiscoveryType
    ports: tuple[ServicePort, ...]
    # SPIFFE IDs of the proxies behind the service (ISTIO_MUTUAL verifies the server against them).
    identities: tuple[str, ...] = ()
    export_to: tuple[str, ...] = ()
    # A ServiceEntry's ``addresses`` (IPs or CIDRs: what captured TCP is matched on).
    addresses: tuple[str, ...] = ()
    # A ServiceEntry's resolution; NONE with capture goes to the original destination.
    resolution: str = "STATIC"
    # The name Istio's metrics give it: a Kubernetes Service's short name ("" = the host).
    name: str = ""
    # The mesh workload behind it (a gateway's Deployment), for the ``destination_*`` labels.
    workload: WorkloadLabels | None = None

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name rule: a host without dots is a service in the resource's namespace."""
    if "." in host or host == "*" or "/" in host:
        return host
    return names.service_fqdn(host, namespace)


def host_matches(pattern: str, host: str) -> bool:
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:])


def exported_to(owner_ns: str, export_to: Sequence[str] | None, viewer_ns: str) -> bool:
    if not export_to:
        return True
    return any(e == "*" or (e == "." and owner_ns == viewer_ns) or e == viewer_ns for e in export_to)


def _entry_services(r: Resource[ServiceEntrySpec], mesh: MeshConfig) -> list[Service]:
    """A ServiceEntry's services, one per host."""
    se = r.spec
    # NONE (the default) and DYNAMIC_DNS send each connection to the host the client asked
    # for: a forward proxy knows it from the request, so Envoy resolves it then.
    discovery = {"STATIC": DiscoveryType.STATIC, "DNS_ROUND_ROBIN": DiscoveryType.LOGICAL_DNS,
                 "DNS": DiscoveryType.STRICT_DNS}.get(se.resolution or "NONE", DiscoveryType.DYNAMIC_FORWARD_PROXY)
    out: list[Service] = []
    for host in se.hosts:
        se_ports: list[ServicePort] = []
        for p in se.ports or []:
            target = p.target_port or p.number
            if discovery is DiscoveryType.DYNAMIC_FORWARD_PROXY:
                eps: tuple[Endpoint, ...] = ()
            elif se.endpoints or discovery is DiscoveryType.STATIC:
                # STATIC without endpoints: a service with none, as in Istio (requests fail).
                eps = tuple(
                    Endpoint(e.address or host, mesh.external_port((e.ports or {}).get(p.name, target), host))
                    for e in se.endpoints or ()
                )
            else:
                eps = (Endpoint(host, mesh.external_port(target, host)),)
            se_ports.append(ServicePort(p.number, p.protocol or "TCP", p.name, eps))
        out.append(Service(host, r.namespace, discovery, tuple(se_ports), (), tuple(se.export_to or ()),
                           tuple(se.addresses or ()), se.resolution or "NONE"))
    return out


def build_registry(service_entries: Sequence[Resource[ServiceEntrySpec]], mesh: MeshConfig,
                   memo: TranslationMemo | None = None) -> list[Service]:
    """The mesh's services (gateways, then Kubernetes Services outside the mesh), then every
    ServiceEntry host; ``service_entries`` in Istio's order (the first declaration of a host wins)."""
    services: list[Service] = []
    seen: set[str] = set()
    for g in mesh.gateways:
        # Every replica answers as the Service, as a Deployment's pods do.
        ports = tuple(ServicePort(p.port, p.protocol, p.name,
                                  tuple(Endpoint(addr, p.target_port) for addr in g.replica_addresses))
                      for p in g.ports)
        services.append(Service(g.service_host, g.namespace, DiscoveryType.STATIC, ports,
                                (names.spiffe_id(*g.identity, trust_domain=mesh.trust_domain),),
                                name=g.service or g.name,
                                workload=workload_labels(g.name, g.namespace, g.labels, g.identity[1], mesh.trust_domain)))
        seen.add(g.service_host)
    for s in mesh.services:
        ports = tuple(ServicePort(p.port, p.protocol, p.name, (Endpoint(s.address, p.target_port),)) for p in s.ports)
        services.append(Service(s.host, s.namespace, DiscoveryType.STATIC, ports, export_to=tuple(s.export_to),
                                name=s.name))
        seen.add(s.host)
    for r in sorted(service_entries, key=lambda r: (r.namespace, r.name)):
        # An unchanged ServiceEntry gives the same Service objects as at the last push, which
        # is what lets the clusters built from them be reused (translate.memo).
        declared = (_entry_services(r, mesh) if memo is None else
                    memo.value(("services", id(r.spec), r.namespace, id(mesh)), (r.spec, mesh),
                               partial(_entry_services, r, mesh)))
        for svc in declared:
            if svc.host in seen:
                continue  # first declaration wins, as Istio keeps the oldest
            seen.add(svc.host)
            services.append(svc)
    return services
