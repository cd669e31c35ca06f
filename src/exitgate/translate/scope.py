"""What one sidecar may see (Istio's ``SidecarScope``): which Sidecar resource applies to a
workload, the services and VirtualServices each of its egress listeners imports, and its
outbound traffic policy.

Istio's rules (``pilot/pkg/model/sidecar.go``, ``push_context.go``):

* precedence: a Sidecar in the workload's namespace whose ``workloadSelector`` matches its
  labels (the oldest if several); else the namespace's Sidecar without a selector; else the root
  namespace's Sidecar without a selector (the mesh default); else everything exported to the
  namespace (``*/*``) and the mesh's outbound policy;
* ``egress[].hosts`` are ``namespace/dnsName``: ``.`` is the Sidecar's namespace, ``*`` any
  namespace, a ``~`` prefix excludes (``~/*`` imports nothing); ``dnsName`` is exact, ``*`` or a
  ``*.suffix`` wildcard. A service is imported when its namespace and host match; a
  VirtualService when its namespace matches and a host overlaps;
* the services a selected VirtualService routes to are imported too (the gateway service of an
  egress route, say), from the workload's namespace first;
* an egress listener with a port imports only that port of each service; a request on a port
  is served by the listener of that port, else by the catch-all (the one without a port).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, partial
from typing import Literal

from exitgate.api.networking import VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.api.sidecar import IstioEgressListener, SidecarSpec
from exitgate.mesh import WorkloadProxy
from exitgate.translate.registry import Service, exported_to, fqdn, host_matches
from exitgate.translate.snapshot import MESH, BoundVirtualService, Snapshot, labels_match

OutboundMode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
ALL_HOSTS = ("*/*",)


def _subset_of(host: str, pattern: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: ``host`` (maybe a wildcard) is covered by ``pattern``."""
    if pattern == "*" or host == pattern:
        return True
    if not pattern.startswith("*"):
        return False
    suffix = pattern[1:]
    return host.endswith(suffix) and (not host.startswith("*") or len(host) - 1 >= len(suffix))


@dataclass(frozen=True)
class HostImports:
    """One egress listener's ``hosts``, by namespace (``*`` = any): imported and excluded."""

    imported: dict[str, tuple[str, ...]]
    excluded: dict[str, tuple[str, ...]]

    @classmethod
    def parse(cls, hosts: Iterable[str], sidecar_ns: str) -> HostImports:
        imported: dict[str, list[str]] = {}
        excluded: dict[str, list[str]] = {}
        for h in hosts:
            ns, _, name = h.partition("/")
            target = imported
            if ns.startswith("~"):
                target, ns = excluded, ns[1:] or "*"
            ns = sidecar_ns if ns == "." else ns
            target.setdefault(ns, []).append(name)
        return cls({k: tuple(v) for k, v in imported.items()}, {k: tuple(v) for k, v in excluded.items()})

    def _in(self, table: dict[str, tuple[str, ...]], namespace: str, host: str) -> bool:
        return any(_subset_of(host, p) for ns in (namespace, "*") for p in table.get(ns, ()))

    @property
    def everything(self) -> bool:
        """``*/*`` with nothing excluded (the default scope): every service and every
        VirtualService with a host is imported."""
        return not self.excluded and "*" in self.imported.get("*", ())

    def service(self, namespace: str, host: str) -> bool:
        if self._in(self.excluded, namespace, host):
            return False
        return self._in(self.imported, namespace, host)

    def virtual_service(self, namespace: str, hosts: Sequence[str]) -> bool:
        # Istio's default (non-gateway) semantics: the hosts may overlap either way.
        patterns = [p for ns in (namespace, "*") for p in self.imported.get(ns, ())]
        return any(host_matches(p, h) or host_matches(h, p) for p in patterns for h in hosts)


@dataclass(frozen=True)
class EgressScope:
    """One egress listener: its port (None: the catch-all), the services it imports (only that
    port of each when the listener has one) and the mesh VirtualServices it selects."""

    port: int | None
    services: tuple[Service, ...]
    virtual_services: tuple[Resource[VirtualServiceSpec], ...]

    def service(self, host: str) -> Service | None:
        return self._by_host.get(host)

    @cached_property
    def _by_host(self) -> dict[str, Service]:
        return {s.host: s for s in self.services}

    @cached_property
    def selected(self) -> frozenset[int]:
        """The identities of the selected VirtualServices, for membership tests."""
        return frozenset(id(vs) for vs in self.virtual_services)


@dataclass(frozen=True)
class SidecarScope:
    sidecar: Resource[SidecarSpec] | None
    listeners: tuple[EgressScope, ...]
    outbound_mode: OutboundMode

    def listener_for(self, port: int) -> EgressScope | None:
        """The egress listener that serves requests on ``port``: its own, else the catch-all."""
        exact = next((e for e in self.listeners if e.port == port), None)
        return exact or next((e for e in self.listeners if e.port is None), None)

    @cached_property
    def services(self) -> list[Service]:
        """Every service any listener imports, each once (the union of their ports)."""
        merged: dict[str, Service] = {}
        for e in self.listeners:
            for s in e.services:
                have = merged.get(s.host)
                if have is None:
                    merged[s.host] = s
                else:
                    ports = {p.number: p for p in (*have.ports, *s.ports)}
                    merged[s.host] = replace(have, ports=tuple(ports[n] for n in sorted(ports)))
        return list(merged.values())


def sidecar_for(snap: Snapshot, workload: WorkloadProxy) -> Resource[SidecarSpec] | None:
    """The Sidecar that applies to ``workload``, by Istio's precedence (module docstring)."""
    own = [s for s in snap.sidecars if s.namespace == workload.namespace]
    selected = [s for s in own if s.spec.workload_selector is not None
                and labels_match(s.spec.workload_selector.labels, workload.labels)]
    if selected:
        return selected[0]
    default = next((s for s in own if s.spec.workload_selector is None), None)
    if default is not None:
        return default
    return next((s for s in snap.sidecars if s.namespace == snap.mesh.root_namespace
                 and s.spec.workload_selector is None), None)


def _trim(service: Service, port: int) -> Service | None:
    p = service.port(port)
    return replace(service, ports=(p,)) if p is not None else None


def _http_destinations(b: BoundVirtualService) -> tuple[str, ...]:
    vs = b.resource
    return tuple(fqdn(rd.destination.host, vs.namespace) for http in vs.spec.http or [] for rd in http.route or [])


def _egress(snap: Snapshot, listener: IstioEgressListener | None, sidecar_ns: str, workload_ns: str) -> EgressScope:
    port = listener.port.number if listener is not None and listener.port is not None else None
    imports = HostImports.parse(listener.hosts if listener is not None else ALL_HOSTS, sidecar_ns)
    everything = imports.everything
    chosen: dict[str, Service] = {}
    for s in snap.services_for(workload_ns):
        if (everything or imports.service(s.namespace, s.host)) and (s.host not in chosen or s.namespace == workload_ns):
            chosen[s.host] = s
    bound = [b for b in snap.virtual_services_in(MESH)
             if exported_to(b.resource.namespace, b.resource.spec.export_to, workload_ns)
             and (b.hosts if everything else imports.virtual_service(b.resource.namespace, b.hosts))]
    vss = tuple(b.resource for b in bound)
    # The destinations of the selected VirtualServices are imported too; explicit imports win.
    memo = snap.memo
    for b in bound:
        for host in (_http_destinations(b) if memo is None else
                     memo.value(("http destinations", id(b)), b, partial(_http_destinations, b))):
            if host not in chosen:
                svc = snap.service(host, workload_ns)
                if svc is not None and svc.host == host:
                    chosen[host] = svc
    services = list(chosen.values())
    if port is not None:
        services = [t for t in (_trim(s, port) for s in services) if t is not None]
    return EgressScope(port, tuple(services), vss)


def sidecar_scope(snap: Snapshot, workload: WorkloadProxy) -> SidecarScope:
    sidecar = sidecar_for(snap, workload)
    mode: OutboundMode = snap.outbound_mode
    if sidecar is None:
        return SidecarScope(None, (_egress(snap, None, workload.namespace, workload.namespace),), mode)
    spec = sidecar.spec
    if spec.outbound_traffic_policy is not None and spec.outbound_traffic_policy.mode is not None:
        mode = spec.outbound_traffic_policy.mode
    listeners: tuple[EgressScope, ...]
    if not spec.egress:
        # A Sidecar without egress listeners keeps the default scope (everything exported here).
        listeners = (_egress(snap, None, sidecar.namespace, workload.namespace),)
    else:
        listeners = tuple(_egress(snap, e, sidecar.namespace, workload.namespace) for e in spec.egress)
    return SidecarScope(sidecar, listeners, mode)
