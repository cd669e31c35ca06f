"""One configuration version, indexed once: what ``translate/`` and ``analyze/`` both read.

Istio builds a ``PushContext`` per push so that translating a proxy looks things up instead of
scanning every resource; this is exitgate's. A ``Snapshot`` is built from the applied resources
and the mesh inventory, never changes, and answers the lookups that used to rescan the resource
list for every service (which VirtualServices bind a host in a context, which DestinationRule
applies, which Gateways select a proxy, which Secret a name means) from indexes.

The rules themselves (host matching, ``exportTo``, Istio's DestinationRule lookup order,
selector matching) are written once, in ``translate.registry`` and here, and used by the
translator and by every analyzer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from itertools import groupby
from operator import attrgetter
from typing import Literal, TypeVar, cast

from exitgate.api.base import Spec
from exitgate.api.core import SecretSpec
from exitgate.api.meshconfig import MESH_CONFIGMAP, ConfigMapSpec
from exitgate.api.networking import DestinationRuleSpec, GatewaySpec, ServiceEntrySpec, VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.api.security import AuthorizationPolicySpec
from exitgate.api.sidecar import SidecarSpec
from exitgate.mesh import GatewayProxy, MeshConfig, with_mesh_config
from exitgate.translate.destination_rules import merge as merge_destination_rules
from exitgate.translate.memo import TranslationMemo
from exitgate.translate.registry import Service, build_registry, exported_to, fqdn, host_matches

MESH = "mesh"

S = TypeVar("S", bound=Spec)


def normalize_gateway(ref: str, namespace: str) -> str:
    """A VirtualService's gateway reference as ``namespace/name`` (or ``mesh``)."""
    if ref == MESH or "/" in ref:
        return ref
    return f"{namespace}/{ref}"


def vs_contexts(vs: Resource[VirtualServiceSpec]) -> tuple[str, ...]:
    """The contexts a VirtualService binds to: its ``gateways`` as ``namespace/name``, or
    ``mesh`` (every sidecar) when it names none."""
    return tuple(normalize_gateway(g, vs.namespace) for g in (vs.spec.gateways or [MESH]))


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Kubernetes' equality selector: every label of ``selector`` present with the same value
    (an empty selector selects everything)."""
    return all(labels.get(k) == v for k, v in selector.items())


def _order(r: Resource) -> tuple[str, str]:
    # Istio orders by creation time; names stand in for it here, so output is deterministic.
    return (r.namespace, r.name)


# A snapshot's order, written out (30,000 keys per push): its kind, then ``_order``.
_KIND_ORDER = attrgetter("kind", "namespace", "name")
_KIND = attrgetter("kind")


# Past this many changed resources, a push translates everything again (as a first push does)
# rather than working out which hosts they touch.
TOUCHED_MAX = 1000


def touched_hosts(changed: Sequence[Resource]) -> frozenset[str] | None:
    """The hosts whose translation ``changed`` resources (added or removed) may change, or None
    when it may change anything: a resource that is not a ServiceEntry, VirtualService or
    DestinationRule, a wildcard host, a VirtualService without hosts. A VirtualService touches
    its hosts and the hosts it routes or mirrors to (a sidecar imports those)."""
    if len(changed) > TOUCHED_MAX:
        return None
    hosts: set[str] = set()
    for r in changed:
        found: list[str]
        if isinstance(r.spec, ServiceEntrySpec):
            found = list(r.spec.hosts)
        elif isinstance(r.spec, DestinationRuleSpec):
            found = [r.spec.host]
        elif isinstance(r.spec, VirtualServiceSpec):
            if not r.spec.hosts:
                return None
            found = [*r.spec.hosts, *_destination_hosts(r.spec)]
        else:
            return None
        for h in found:
            if "*" in h:
                return None
            hosts.update((h, fqdn(h, r.namespace)))
    return frozenset(hosts)


def _destination_hosts(spec: VirtualServiceSpec) -> Iterable[str]:
    for http in spec.http or []:
        yield from (d.destination.host for d in http.route or [])
        if http.mirror is not None:
            yield http.mirror.host
        yield from (m.destination.host for m in http.mirrors or [])
    for tls in spec.tls or []:
        yield from (d.destination.host for d in tls.route)
        yield from (h for m in tls.match for h in m.sni_hosts)
    for tcp in spec.tcp or []:
        yield from (d.destination.host for d in tcp.route)


@dataclass(frozen=True)
class BoundVirtualService:
    """A VirtualService with what the indexes need precomputed: its gateway contexts and its
    hosts as FQDNs (short names resolved in its own namespace)."""

    resource: Resource[VirtualServiceSpec]
    contexts: tuple[str, ...]
    hosts: tuple[str, ...]


def _bound(vs: Resource[VirtualServiceSpec]) -> BoundVirtualService:
    return BoundVirtualService(vs, vs_contexts(vs), tuple(fqdn(h, vs.namespace) for h in vs.spec.hosts or []))


class Snapshot:
    """The indexed configuration; see the module docstring. Cheap to build (one pass per kind),
    and each index is built on first use."""

    def __init__(self, resources: Iterable[Resource], mesh: MeshConfig, memo: TranslationMemo | None = None) -> None:
        # ``memo``: results of earlier pushes that this one may reuse (the control plane's).
        self.memo = memo
        if memo is not None:
            mesh = memo.same_mesh(mesh)
        # By kind, then ``_order``: usually the store's order already, which the sort goes through once.
        self.resources: tuple[Resource, ...] = tuple(sorted(resources, key=_KIND_ORDER))
        # What changed since the memo's last snapshot, for the translation's fragments.
        self.generation = memo.observe(self.resources, mesh, touched_hosts) if memo is not None else 0
        self._by_kind = {kind: tuple(group) for kind, group in groupby(self.resources, key=_KIND)}
        # Istio's mesh ConfigMap, when applied, sets the access log over the mesh file's. The
        # same mesh object comes back while neither changes: translations are memoized on it.
        cm = next((c for c in self._typed("ConfigMap", ConfigMapSpec) if (c.namespace, c.name) == MESH_CONFIGMAP), None)
        if cm is None:
            self.mesh = mesh
        elif memo is None:
            self.mesh = with_mesh_config(mesh, cm.spec.mesh_config())
        else:
            self.mesh = memo.value(("mesh config", id(mesh), id(cm.spec)), (mesh, cm.spec),
                                   lambda: with_mesh_config(mesh, cm.spec.mesh_config()))

    # -- resources by kind, typed ---------------------------------------------------------------
    def of_kind(self, kind: str) -> tuple[Resource, ...]:
        return self._by_kind.get(kind, ())

    def _typed(self, kind: str, spec: type[S]) -> tuple[Resource[S], ...]:
        # The loader builds each kind with its own spec model; checked once here so no caller
        # needs an isinstance test.
        out = self.of_kind(kind)
        assert all(isinstance(r.spec, spec) for r in out), kind
        return cast("tuple[Resource[S], ...]", out)

    @cached_property
    def service_entries(self) -> tuple[Resource[ServiceEntrySpec], ...]:
        return self._typed("ServiceEntry", ServiceEntrySpec)

    @cached_property
    def gateways(self) -> tuple[Resource[GatewaySpec], ...]:
        return self._typed("Gateway", GatewaySpec)

    @cached_property
    def virtual_services(self) -> tuple[Resource[VirtualServiceSpec], ...]:
        return self._typed("VirtualService", VirtualServiceSpec)

    @cached_property
    def destination_rules(self) -> tuple[Resource[DestinationRuleSpec], ...]:
        return self._typed("DestinationRule", DestinationRuleSpec)

    @cached_property
    def secrets(self) -> tuple[Resource[SecretSpec], ...]:
        return self._typed("Secret", SecretSpec)

    @cached_property
    def sidecars(self) -> tuple[Resource[SidecarSpec], ...]:
        return self._typed("Sidecar", SidecarSpec)

    @cached_property
    def authorization_policies(self) -> tuple[Resource[AuthorizationPolicySpec], ...]:
        return self._typed("AuthorizationPolicy", AuthorizationPolicySpec)

    # -- secrets --------------------------------------------------------------------------------
    @cached_property
    def _secret_index(self) -> dict[tuple[str, str], Resource[SecretSpec]]:
        return {(r.namespace, r.name): r for r in self.secrets}

    def secret(self, namespace: str, name: str) -> Resource[SecretSpec] | None:
        return self._secret_index.get((namespace, name))

    def secret_namespaces(self, name: str) -> list[str]:
        """Every namespace holding a Secret called ``name`` (to say where a missing one is)."""
        return sorted(ns for ns, n in self._secret_index if n == name)

    # -- services -------------------------------------------------------------------------------
    @cached_property
    def services(self) -> tuple[Service, ...]:
        return tuple(build_registry(self.service_entries, self.mesh, self.memo))

    @cached_property
    def _service_by_host(self) -> dict[str, Service]:
        return {s.host: s for s in self.services}

    @cached_property
    def _wildcard_services(self) -> tuple[Service, ...]:
        return tuple(s for s in self.services if "*" in s.host)

    def services_for(self, viewer_ns: str) -> list[Service]:
        """The services exported to ``viewer_ns`` (a new list; each namespace's is worked out once)."""
        found = self._exported.get(viewer_ns)
        if found is None:
            found = self._exported[viewer_ns] = tuple(
                s for s in self.services if not s.export_to or exported_to(s.namespace, s.export_to, viewer_ns))
        return list(found)

    @cached_property
    def _exported(self) -> dict[str, tuple[Service, ...]]:
        return {}

    def service(self, host: str, viewer_ns: str | None = None) -> Service | None:
        """The service answering for ``host``: the exact name first, then a wildcard
        ServiceEntry host; optionally only among those exported to ``viewer_ns``."""
        exact = self._service_by_host.get(host)
        if exact is not None and (viewer_ns is None or exported_to(exact.namespace, exact.export_to, viewer_ns)):
            return exact
        return next((s for s in self._wildcard_services if host_matches(s.host, host) and
                     (viewer_ns is None or exported_to(s.namespace, s.export_to, viewer_ns))), None)

    @cached_property
    def gateway_by_host(self) -> dict[str, GatewayProxy]:
        return {g.service_host: g for g in self.mesh.gateways}

    # -- VirtualServices ------------------------------------------------------------------------
    @cached_property
    def bound_virtual_services(self) -> tuple[BoundVirtualService, ...]:
        if self.memo is None:
            return tuple(map(_bound, self.virtual_services))
        # The same resource, the same object from push to push (what fragments key on).
        memo = self.memo
        return tuple(memo.value(("bound", id(vs)), vs, partial(_bound, vs)) for vs in self.virtual_services)

    @cached_property
    def _vs_index(self) -> tuple[dict[tuple[str, str], list[BoundVirtualService]], dict[str, list[BoundVirtualService]]]:
        exact: dict[tuple[str, str], list[BoundVirtualService]] = {}
        wildcard: dict[str, list[BoundVirtualService]] = {}
        for b in self.bound_virtual_services:
            for context in b.contexts:
                for h in b.hosts:
                    if "*" in h:
                        wildcard.setdefault(context, []).append(b)
                    else:
                        exact.setdefault((context, h), []).append(b)
        return exact, wildcard

    @cached_property
    def _vs_by_context(self) -> dict[str, list[BoundVirtualService]]:
        out: dict[str, list[BoundVirtualService]] = {}
        for b in self.bound_virtual_services:
            for context in dict.fromkeys(b.contexts):
                out.setdefault(context, []).append(b)
        return out

    def virtual_services_in(self, context: str) -> list[BoundVirtualService]:
        """Every VirtualService bound to ``context`` (``mesh`` or ``namespace/gateway``), in
        Istio's order (a new list: each proxy's translation asks several times per push)."""
        return list(self._vs_by_context.get(context, ()))

    def virtual_services_for(self, context: str, host: str, proxy_ns: str) -> list[Resource[VirtualServiceSpec]]:
        """VirtualServices bound to ``context`` with a host matching ``host``, in Istio's order;
        in the ``mesh`` context only those exported to the proxy's namespace."""
        exact, wildcard = self._vs_index
        found = {id(b): b for b in exact.get((context, host), [])}
        for b in wildcard.get(context, []):
            if any(host_matches(h, host) for h in b.hosts):
                found.setdefault(id(b), b)
        out = [b.resource for b in found.values()
               if context != MESH or exported_to(b.resource.namespace, b.resource.spec.export_to, proxy_ns)]
        return sorted(out, key=_order)

    # -- DestinationRules -----------------------------------------------------------------------
    @cached_property
    def _dr_index(self) -> dict[str, tuple[dict[str, list[Resource[DestinationRuleSpec]]],
                                          list[tuple[str, Resource[DestinationRuleSpec]]]]]:
        out: dict[str, tuple[dict[str, list[Resource[DestinationRuleSpec]]],
                             list[tuple[str, Resource[DestinationRuleSpec]]]]] = {}
        grouped: dict[tuple[str, str], list[Resource[DestinationRuleSpec]]] = {}
        for r in self.destination_rules:  # in Istio's order
            grouped.setdefault((r.namespace, fqdn(r.spec.host, r.namespace)), []).append(r)
        for (ns, pattern), rules in grouped.items():
            exact, wildcard = out.setdefault(ns, ({}, []))
            # Rules for the same host in the same namespace are one, as Istio merges them.
            merged = self._merged(rules) if len(rules) > 1 else rules
            if "*" in pattern:
                wildcard += [(pattern, r) for r in merged]
            else:
                exact[pattern] = merged
        for _, wildcard in out.values():
            # The most specific wildcard first (the longest), then by name.
            wildcard.sort(key=lambda pr: (-len(pr[0]), pr[1].name))
        return out

    def _merged(self, rules: list[Resource[DestinationRuleSpec]]) -> list[Resource[DestinationRuleSpec]]:
        if self.memo is None:
            return merge_destination_rules(rules)
        # The same specs merge to the same objects from push to push (what the cluster memo keys on).
        key = ("dr-merge", tuple((id(r.spec), r.namespace, r.name, r.source) for r in rules))
        return self.memo.value(key, [r.spec for r in rules], partial(merge_destination_rules, rules))

    def destination_rule(self, host: str, proxy_ns: str, service_ns: str) -> Resource[DestinationRuleSpec] | None:
        """Istio's lookup: the proxy's namespace first, then the service's, then the root
        namespace; each only if the rule is exported to the proxy. Exact host beats wildcard."""
        for ns in dict.fromkeys((proxy_ns, service_ns, self.mesh.root_namespace)):
            index = self._dr_index.get(ns)
            if index is None:
                continue
            exact, wildcard = index
            for r in exact.get(host, []):
                if exported_to(r.namespace, r.spec.export_to, proxy_ns):
                    return r
            for pattern, r in wildcard:
                if host_matches(pattern, host) and exported_to(r.namespace, r.spec.export_to, proxy_ns):
                    return r
        return None

    # -- mesh-wide settings ---------------------------------------------------------------------
    @cached_property
    def outbound_mode(self) -> Literal["ALLOW_ANY", "REGISTRY_ONLY"]:
        """The mesh's outbound traffic policy (a Sidecar may override it for its workloads):
        Istio's ConfigMap when it is applied and sets one, else the mesh file's."""
        for cm in self._typed("ConfigMap", ConfigMapSpec):
            if (cm.namespace, cm.name) == MESH_CONFIGMAP:
                parsed = cm.spec.mesh_config()
                if parsed is not None and parsed.outbound_traffic_policy is not None:
                    return parsed.outbound_traffic_policy.mode
        return self.mesh.outbound_traffic_policy.mode

    # -- Gateways -------------------------------------------------------------------------------
    def gateways_selecting(self, proxy: GatewayProxy) -> list[Resource[GatewaySpec]]:
        """The Gateways whose selector matches the gateway proxy's labels, in Istio's order."""
        return [g for g in self.gateways if labels_match(g.spec.selector, proxy.labels)]

    def gateway_resource(self, context: str) -> Resource[GatewaySpec] | None:
        ns, _, name = context.partition("/")
        return next((g for g in self.gateways if g.namespace == ns and g.name == name), None)

    def gateway_proxies(self, gateway: Resource[GatewaySpec]) -> list[GatewayProxy]:
        """The gateway proxies a Gateway selects."""
        return [g for g in self.mesh.gateways if labels_match(gateway.spec.selector, g.labels)]

    @cached_property
    def istio_mutual_gateway_ports(self) -> dict[str, frozenset[int]]:
        """Service host -> the gateway service ports whose Gateway servers use ISTIO_MUTUAL
        (Istio's auto mTLS reaches them with ISTIO_MUTUAL when no DestinationRule says otherwise)."""
        out: dict[str, set[int]] = {}
        for g in self.mesh.gateways:
            for gw in self.gateways_selecting(g):
                for server in gw.spec.servers:
                    if server.tls is not None and server.tls.mode == "ISTIO_MUTUAL":
                        out.setdefault(g.service_host, set()).add(server.port.number)
        return {h: frozenset(p) for h, p in out.items()}


def snapshot_of(resources: Sequence[Resource] | Snapshot, mesh: MeshConfig) -> Snapshot:
    """A snapshot for callers that still hold a resource list (tests, one-off translations)."""
    return resources if isinstance(resources, Snapshot) else Snapshot(resources, mesh)
