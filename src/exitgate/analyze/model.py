"""What every analyzer reads: the resources by kind, the service registry, which gateway proxies
each Gateway selects, and the traffic graph — every way a request leaves a proxy (an http route
destination of a VirtualService, or a sidecar's default route to a service) together with the
DestinationRule and TLS settings that proxy will use for it.

Built once per ``analyze`` call from resources, the mesh inventory and a clock; pure (no I/O).
The resolution rules are the translator's (``translate.registry``, ``translate.routing``,
``translate.tls``), so an analyzer judges what exitgate will actually configure; where an Istio
code is defined by what Istio's analyzer reads, the context also has that analyzer's view of the
cluster (``pods``, ``istio_destination``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import cast

from exitgate import names
from exitgate.api.core import SecretSpec
from exitgate.api.diagnostics import Severity
from exitgate.api.kube import ServiceBody, service_export_to
from exitgate.api.networking import (
    ClientTLSSettings,
    Destination,
    DestinationRuleSpec,
    GatewaySpec,
    HTTPRoute,
    HTTPRouteDestination,
    RouteDestination,
    Server,
    ServiceEntrySpec,
    VirtualServiceSpec,
)
from exitgate.api.resources import Resource
from exitgate.api.security import AuthorizationPolicySpec
from exitgate.api.sidecar import SidecarSpec
from exitgate.inventory import pods_of
from exitgate.mesh import GatewayProxy, MeshConfig, WorkloadProxy
from exitgate.translate.registry import Service, fqdn, host_matches
from exitgate.translate.routing import match_contexts
from exitgate.translate.scope import SidecarScope, sidecar_scope
from exitgate.translate.snapshot import MESH, Snapshot, labels_match
from exitgate.translate.tls import cluster_policy

Path = tuple[str | int, ...]
Proxy = GatewayProxy | WorkloadProxy


@dataclass(frozen=True)
class Finding:
    """One problem an analyzer found, on ``resource`` at ``path`` (YAML field names, e.g.
    ``("spec", "http", 0, "route", 0, "destination", "host")``). ``analyze`` turns it into a
    ``Diagnostic`` with file and line."""

    code: str
    severity: Severity
    message: str
    resource: Resource | None = None
    path: Path = ()


@dataclass(frozen=True)
class Edge:
    """One way traffic leaves ``proxy``: route ``path`` of ``vs`` in ``context`` (``mesh`` or
    ``ns/gateway``), or, when ``vs`` is None, a sidecar's default route to a service."""

    proxy: Proxy
    context: str
    vs: Resource[VirtualServiceSpec] | None
    path: Path
    host: str
    port: int | None
    subset: str
    service: Service | None = field(compare=False)

    @property
    def implicit(self) -> bool:
        return self.vs is None


def is_gateway_proxy(proxy: Proxy) -> bool:
    return isinstance(proxy, GatewayProxy)


def proxy_ref(proxy: Proxy) -> str:
    role = "gateway" if is_gateway_proxy(proxy) else "sidecar of workload"
    return f"{role} {proxy.name}.{proxy.namespace}"


def quoted(value: str) -> str:
    """Go's %q for the plain names analyzers print (Istio's message templates use it)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector_string(selector: dict[str, str]) -> str:
    """A label selector as Kubernetes prints it: ``app=x,istio=egressgateway``."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def server_host_parts(host: str) -> tuple[str | None, str]:
    """``ns/host`` -> (ns, host); a plain host has no namespace part."""
    if "/" in host:
        ns, _, h = host.partition("/")
        return ns, h
    return None, host


def hosts_overlap(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def istio_hosts_match(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: equal names, or a wildcard (``*...``) covering the other,
    or of two wildcards the longer ending with the shorter."""
    if a.startswith("*") and b.startswith("*"):
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if a.startswith("*"):
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


AMBIENT_REDIRECTION = "ambient.istio.io/redirection"


@dataclass(frozen=True)
class Pod:
    """A pod as Istio's analyzers see the cluster: each Deployment's and Pod's of the resources
    (injected or not, gateway or not) and each proxy of the mesh file no object declares, with
    its labels and the ports a Gateway server may listen on for it (Istio's
    IngressGatewayPortAnalyzer): the port and numeric targetPort of every TCP port of the
    Services of its namespace that select it; a mesh-file gateway's own ports."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(compare=False)
    annotations: Mapping[str, str] = field(compare=False)
    ports: frozenset[int] = field(compare=False)

    @property
    def ambient(self) -> bool:
        return self.annotations.get(AMBIENT_REDIRECTION) == "enabled"


@dataclass(frozen=True)
class HostEntry:
    """What Istio's analyzers know of a host (``util.InitServiceEntryHostMap``): the ports of the
    ServiceEntry or Kubernetes Service that declares it."""

    ports: tuple[int, ...]


def service_selects(service: Resource, namespace: str, labels: Mapping[str, str]) -> bool:
    """A Kubernetes Service of ``namespace`` whose (non-empty) selector matches ``labels``."""
    selector = cast(ServiceBody, service.spec).spec.selector
    return service.namespace == namespace and bool(selector) and labels_match(selector or {}, labels)


def export_scopes(export_to: Sequence[str] | None, namespace: str) -> list[str]:
    """exportTo as Istio's analyzers index it: ``["*"]`` when empty or containing ``*``, else the
    namespaces (``.`` is the resource's own)."""
    if not export_to or "*" in export_to:
        return ["*"]
    return sorted({namespace if e == "." else e for e in export_to})


def originates_tls(tls: ClientTLSSettings | None) -> bool:
    return tls is not None and tls.mode not in (None, "DISABLE")


def server_expects_tls(server: Server) -> bool:
    return server.port.protocol in ("HTTPS", "TLS") or (server.tls is not None and server.tls.mode is not None)


def incoming_ports(http: HTTPRoute, context: str, vs_namespace: str) -> set[int | None] | None:
    """The ports on which rule ``http`` applies in ``context`` (None in the set: any port), or
    None when no match of the rule applies to that context."""
    if not http.match:
        return {None}
    ports: set[int | None] = set()
    applies = False
    for m in http.match:
        contexts = match_contexts(m.gateways, vs_namespace)
        if contexts is not None and context not in contexts:
            continue
        applies = True
        ports.add(m.port)
    return ports if applies else None


class Context:
    """The analyzed configuration; see the module docstring. It reads the translator's
    ``Snapshot`` (the same indexes and rules), plus the clock."""

    def __init__(self, resources: Sequence[Resource], mesh: MeshConfig, now: datetime) -> None:
        self.snapshot = Snapshot(resources, mesh)
        self.resources = self.snapshot.resources
        self.mesh = mesh
        self.now = now

    def of_kind(self, kind: str) -> tuple[Resource, ...]:
        return self.snapshot.of_kind(kind)

    @property
    def gateways(self) -> tuple[Resource[GatewaySpec], ...]:
        return self.snapshot.gateways

    @property
    def virtual_services(self) -> tuple[Resource[VirtualServiceSpec], ...]:
        return self.snapshot.virtual_services

    @property
    def destination_rules(self) -> tuple[Resource[DestinationRuleSpec], ...]:
        return self.snapshot.destination_rules

    @property
    def service_entries(self) -> tuple[Resource[ServiceEntrySpec], ...]:
        return self.snapshot.service_entries

    @property
    def secrets(self) -> tuple[Resource[SecretSpec], ...]:
        return self.snapshot.secrets

    @property
    def sidecars(self) -> tuple[Resource[SidecarSpec], ...]:
        return self.snapshot.sidecars

    @property
    def authorization_policies(self) -> tuple[Resource[AuthorizationPolicySpec], ...]:
        return self.snapshot.authorization_policies

    @cached_property
    def proxies(self) -> list[Proxy]:
        """Every proxy of the mesh (Istio's in-mesh pods): gateways, then workload sidecars."""
        return [*self.mesh.gateways, *self.mesh.workloads]

    @cached_property
    def pods(self) -> list[Pod]:
        """Every pod of the cluster Istio's analyzers would see (see ``Pod``)."""
        services = [r for r in self.resources if r.kind == "Service"]
        out: list[Pod] = []
        for p in pods_of(self.resources):
            r = p.resource
            ports: set[int] = set()
            for svc in services:
                if not service_selects(svc, r.namespace, p.labels):
                    continue
                for sp in cast(ServiceBody, svc.spec).spec.ports or []:
                    if sp.protocol == "TCP":
                        ports.add(sp.port)
                        if isinstance(sp.target_port, int):
                            ports.add(sp.target_port)
            out.append(Pod(r.name, r.namespace, p.labels, p.annotations, frozenset(ports)))
        declared = {(p.name, p.namespace) for p in out}
        for proxy in self.proxies:
            if (proxy.name, proxy.namespace) in declared:
                continue
            gw_ports = (frozenset(n for sp in proxy.ports for n in (sp.port, sp.target_port))
                        if isinstance(proxy, GatewayProxy) else frozenset())
            out.append(Pod(proxy.name, proxy.namespace, proxy.labels, {}, gw_ports))
        return out

    def pods_selected(self, selector: Mapping[str, str], namespace: str | None = None) -> list[Pod]:
        """The pods whose labels ``selector`` matches (an empty one matches all), optionally of
        one namespace."""
        return [p for p in self.pods if (namespace is None or p.namespace == namespace)
                and labels_match(selector, p.labels)]

    @cached_property
    def namespace_labels(self) -> dict[str, dict[str, str]]:
        """The Namespace objects of the resources: name -> labels."""
        return {r.name: dict((r.raw.get("metadata") or {}).get("labels") or {})
                for r in self.resources if r.kind == "Namespace"}

    @cached_property
    def host_entries(self) -> dict[tuple[str, str], HostEntry]:
        """Istio's analyzers' host index (``util.InitServiceEntryHostMap``): (scope, host) ->
        entry, scope ``*`` or a namespace the host is exported to. ServiceEntries by their
        exportTo, Kubernetes Services by their ``networking.istio.io/exportTo`` annotation; then
        what only exitgate's mesh has (the mesh file's gateways and services), exported to all."""
        out: dict[tuple[str, str], HostEntry] = {}
        for se in self.service_entries:
            entry = HostEntry(tuple(p.number for p in se.spec.ports or []))
            for h in se.spec.hosts:
                for scope in export_scopes(se.spec.export_to, se.namespace):
                    out[(scope, fqdn(h, se.namespace))] = entry
        known: set[str] = {h for _, h in out}
        for svc in (r for r in self.resources if r.kind == "Service"):
            body = cast(ServiceBody, svc.spec).spec
            entry = HostEntry(tuple(p.port for p in body.ports or []))
            host = names.service_fqdn(svc.name, svc.namespace)
            for scope in export_scopes(service_export_to(svc.raw), svc.namespace):
                out[(scope, host)] = entry
            known.add(host)
        for g in self.mesh.gateways:
            if g.service_host not in known:
                out[("*", g.service_host)] = HostEntry(tuple(p.port for p in g.ports))
                known.add(g.service_host)
        for s in self.mesh.services:
            if s.host not in known:
                out[("*", s.host)] = HostEntry(tuple(p.port for p in s.ports))
                known.add(s.host)
        return out

    def istio_destination(self, source_ns: str, export_to: Sequence[str] | None, host: str) -> HostEntry | None:
        """Istio's ``util.GetDestinationHost``: the entry for ``host`` as a resource of
        ``source_ns`` exported to ``export_to`` sees it — exported to all, else to its own
        namespace (or, with exportTo, to one of those namespaces); then a wildcard host exported
        to all or to ``source_ns`` whose suffix ``host`` ends with."""
        entries = self.host_entries
        h = fqdn(host, source_ns)
        found = entries.get(("*", h))
        if found is not None:
            return found
        for scope in ([source_ns] if not export_to else [source_ns if e == "." else e for e in export_to]):
            found = entries.get((scope, h))
            if found is not None:
                return found
        bare = host.removeprefix("*")
        for scope, se_host, entry in self._wildcard_entries:
            if scope in ("*", source_ns) and bare.endswith(se_host[1:]):
                return entry
        return None

    @cached_property
    def _wildcard_entries(self) -> list[tuple[str, str, HostEntry]]:
        return [(scope, h, entry) for (scope, h), entry in self.host_entries.items() if h.startswith("*")]

    @property
    def services(self) -> tuple[Service, ...]:
        return self.snapshot.services

    @property
    def gateway_by_host(self) -> dict[str, GatewayProxy]:
        return self.snapshot.gateway_by_host

    def gateway_resource(self, context: str) -> Resource[GatewaySpec] | None:
        return self.snapshot.gateway_resource(context)

    def secret(self, namespace: str, name: str) -> Resource[SecretSpec] | None:
        return self.snapshot.secret(namespace, name)

    def service(self, host: str, viewer_ns: str | None = None) -> Service | None:
        return self.snapshot.service(host, viewer_ns)

    def selected_proxies(self, gateway: Resource) -> list[GatewayProxy]:
        """The gateway proxies a Gateway's selector matches (all labels equal)."""
        return self.snapshot.gateway_proxies(cast("Resource[GatewaySpec]", gateway))

    def servers_on(self, proxy: GatewayProxy, port: int) -> list[tuple[Resource[GatewaySpec], int, Server]]:
        """(Gateway, server index, server) of every Gateway selecting ``proxy`` with a server on
        service port ``port``."""
        out = []
        for gw in self.snapshot.gateways_selecting(proxy):
            for i, server in enumerate(gw.spec.servers):
                if server.port.number == port:
                    out.append((gw, i, server))
        return out

    @cached_property
    def scopes(self) -> dict[tuple[str, str], SidecarScope]:
        """Each workload's sidecar scope, as the translator computes it."""
        return {(w.name, w.namespace): sidecar_scope(self.snapshot, w) for w in self.mesh.workloads}

    def proxies_for(self, context: str, vs: Resource) -> list[Proxy]:
        if context == MESH:
            return [w for w in self.mesh.workloads
                    if any(id(vs) in e.selected for e in self.scopes[(w.name, w.namespace)].listeners)]
        gw = self.gateway_resource(context)
        return list(self.selected_proxies(gw)) if gw is not None else []

    @cached_property
    def edges(self) -> list[Edge]:
        return self._route_edges() + self._default_edges()

    def _route_edges(self) -> list[Edge]:
        out: list[Edge] = []
        for b in self.snapshot.bound_virtual_services:
            vs = b.resource
            for context in b.contexts:
                proxies = self.proxies_for(context, vs)
                for i, http in enumerate(vs.spec.http or []):
                    ports = incoming_ports(http, context, vs.namespace)
                    if ports is None:
                        continue
                    for j, rd in enumerate(http.route or []):
                        d = rd.destination
                        host = fqdn(d.host, vs.namespace)
                        path: Path = ("spec", "http", i, "route", j, "destination")
                        for proxy in proxies:
                            svc = self.service(host, proxy.namespace)
                            for port in self._destination_ports(d.port.number if d.port else None, svc, ports):
                                out.append(Edge(proxy, context, vs, path, host, port, d.subset or "", svc))
        return out

    @staticmethod
    def _destination_ports(given: int | None, svc: Service | None, incoming: set[int | None]) -> list[int | None]:
        # translate.routing._destination_port: the given port, the service's only port, else the
        # port the request came in on.
        if given is not None:
            return [given]
        if svc is not None and len(svc.ports) == 1:
            return [svc.ports[0].number]
        return sorted(incoming, key=lambda p: -1 if p is None else p)

    def _default_edges(self) -> list[Edge]:
        """A sidecar sends a request for a service's HTTP port no mesh VirtualService claims
        straight to that service (gateway services excepted: nobody calls them directly). The
        services are those of the workload's sidecar scope."""
        out: list[Edge] = []
        for w in self.mesh.workloads:
            scope = self.scopes[(w.name, w.namespace)]
            claimed = [h for e in scope.listeners for vs in e.virtual_services for h in
                       (fqdn(x, vs.namespace) for x in vs.spec.hosts or [])]
            for svc in scope.services:
                if svc.host in self.gateway_by_host:
                    continue
                if any(hosts_overlap(c, svc.host) for c in claimed):
                    continue
                for p in svc.ports:
                    if p.is_http:
                        out.append(Edge(w, MESH, None, (), svc.host, p.number, "", svc))
        return out

    def destination_rule(self, edge: Edge) -> Resource[DestinationRuleSpec] | None:
        """The DestinationRule ``edge.proxy`` applies to the edge's host (Istio's lookup order)."""
        svc_ns = edge.service.namespace if edge.service is not None else edge.proxy.namespace
        return self.snapshot.destination_rule(edge.host, edge.proxy.namespace, svc_ns)

    def has_cluster(self, edge: Edge) -> bool:
        """False when the edge names a subset the proxy's DestinationRule does not define (no
        cluster at all: IST0101 / EG0102 report it)."""
        if not edge.subset:
            return True
        dr = self.destination_rule(edge)
        return dr is not None and any(s.name == edge.subset for s in dr.spec.subsets or [])

    def client_tls(self, edge: Edge) -> tuple[Resource | None, ClientTLSSettings | None, Path]:
        """(DestinationRule, its TLS settings for the edge's subset and port, where written).
        With no TLS setting, a gateway port served with ISTIO_MUTUAL gets ISTIO_MUTUAL (Istio's
        auto mTLS, as the translator does); ``where`` is then empty."""
        dr = self.destination_rule(edge)
        policy = cluster_policy(dr.spec if dr is not None else None, edge.subset, edge.port)
        tls, where = policy.tls, policy.tls_path
        if tls is None and edge.port is not None and edge.port in self.snapshot.istio_mutual_gateway_ports.get(edge.host, ()):
            tls = ClientTLSSettings(mode="ISTIO_MUTUAL")
        return dr, tls, where


@dataclass(frozen=True)
class CredentialUse:
    """``credentialName`` ``secret`` written at ``path`` of ``resource``, which ``proxies`` will
    read from their own namespace. ``client`` is True for a DestinationRule (the proxy presents
    it), False for a Gateway server."""

    resource: Resource
    path: Path
    secret: str
    mode: str | None
    client: bool
    proxies: tuple[Proxy, ...]

    @property
    def namespaces(self) -> list[str]:
        return sorted({p.namespace for p in self.proxies})

    @property
    def candidates(self) -> tuple[str, ...]:
        """Secret names that satisfy the reference: a SIMPLE client only needs a CA, which may
        come from ``NAME-cacert`` (Istio's convention) instead of ``NAME``."""
        if self.client and self.mode == "SIMPLE":
            return (self.secret, self.secret + names.CACERT_SUFFIX)
        return (self.secret,)


def credential_uses(ctx: Context) -> list[CredentialUse]:
    """Every credentialName with the proxies that will load it: the gateway proxies a Gateway
    selects; for a DestinationRule, the proxies whose traffic resolves to that rule and setting."""
    out: list[CredentialUse] = []
    for gw in ctx.gateways:
        gw_proxies = tuple(ctx.selected_proxies(gw))
        for i, server in enumerate(gw.spec.servers):
            stls = server.tls
            if stls is not None and stls.credential_name and gw_proxies:
                out.append(CredentialUse(gw, ("spec", "servers", i, "tls", "credentialName"), stls.credential_name,
                                         stls.mode, False, gw_proxies))
    by_setting: dict[tuple[str, str, str, Path], tuple[Resource, str, str | None, list[Proxy]]] = {}
    for edge in ctx.edges:
        dr, tls, where = ctx.client_tls(edge)
        if dr is None or tls is None or not tls.credential_name or tls.mode in (None, "DISABLE", "ISTIO_MUTUAL"):
            continue
        key = (dr.namespace, dr.name, tls.credential_name, where)
        entry = by_setting.setdefault(key, (dr, tls.credential_name, tls.mode, []))
        if edge.proxy not in entry[3]:
            entry[3].append(edge.proxy)
    for (_, _, _, where), (dr, name, mode, proxies) in by_setting.items():
        out.append(CredentialUse(dr, where + ("credentialName",), name, mode, True, tuple(proxies)))
    return out


def route_destinations(ctx: Context) -> Iterator[tuple[Resource[VirtualServiceSpec], Path, Destination]]:
    """Every route destination of every VirtualService (tcp, tls, then http routes, as Istio's
    analyzers list them), then its http mirrors; with the field path."""
    for vs in ctx.virtual_services:
        routes: list[tuple[str, Sequence[Sequence[RouteDestination | HTTPRouteDestination] | None]]] = [
            ("tcp", [r.route for r in vs.spec.tcp or []]), ("tls", [r.route for r in vs.spec.tls or []]),
            ("http", [r.route for r in vs.spec.http or []])]
        for kind, rules in routes:
            for i, route in enumerate(rules):
                for j, rd in enumerate(route or []):
                    yield vs, ("spec", kind, i, "route", j, "destination"), rd.destination
        for i, http in enumerate(vs.spec.http or []):
            if http.mirror is not None:
                yield vs, ("spec", "http", i, "mirror"), http.mirror
            for j, m in enumerate(http.mirrors or []):
                yield vs, ("spec", "http", i, "mirrors", j, "destination"), m.destination
