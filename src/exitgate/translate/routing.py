"""VirtualService http routes -> IR routes, for one gateway context ("mesh" for sidecars,
"namespace/name" for a Gateway) and one port."""

from __future__ import annotations

from collections.abc import Sequence

from exitgate import names
from exitgate.api.networking import HTTPRoute, VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.ir import Route, WeightedCluster
from exitgate.translate.registry import Service, fqdn, host_matches
from exitgate.translate.snapshot import normalize_gateway

def match_contexts(gateways: Sequence[str] | None, vs_namespace: str) -> list[str] | None:
    """The contexts a match's ``gateways`` restrict it to (None: the VirtualService's own)."""
    return [normalize_gateway(g, vs_namespace) for g in gateways] if gateways else None


def server_host_binds(server_host: str, gateway_ns: str, vs_ns: str, vs_host: str) -> bool:
    """Whether a Gateway server's host (``host``, ``ns/host``, ``./host``, ``*/host``) lets a
    VirtualService of namespace ``vs_ns`` bind ``vs_host`` to it: the namespace part must name
    the VirtualService's namespace (``.`` the Gateway's own, ``*`` any), and the host parts must
    overlap (either may be a wildcard)."""
    ns, sep, host = server_host.partition("/")
    if not sep:
        ns, host = "*", server_host
    if ns == ".":
        ns = gateway_ns
    if ns != "*" and ns != vs_ns:
        return False
    return host_matches(host, vs_host) or host_matches(vs_host, host)


def _destination_port(host: str, given: int | None, incoming: int, services: dict[str, Service]) -> int:
    if given is not None:
        return given
    svc = services.get(host)
    if svc is not None and len(svc.ports) == 1:
        return svc.ports[0].number
    return incoming


def _clusters(route: HTTPRoute, vs_ns: str, incoming: int, services: dict[str, Service]) -> tuple[WeightedCluster, ...]:
    out = []
    for d in route.route or []:
        host = fqdn(d.destination.host, vs_ns)
        port = _destination_port(host, d.destination.port.number if d.destination.port else None, incoming, services)
        weight = d.weight if d.weight is not None else (100 if len(route.route or []) == 1 else 0)
        out.append(WeightedCluster(names.cluster_name(host, port, d.destination.subset or ""), weight))
    return tuple(out)


def routes_for(vss: Sequence[Resource[VirtualServiceSpec]], context: str, port: int, services: dict[str, Service]) -> list[Route]:
    """The IR routes of ``vss`` that apply to ``context`` on ``port``, in order."""
    out: list[Route] = []
    for vs in vss:
        for i, http in enumerate(vs.spec.http or []):
            name = http.name or f"{vs.name}.{vs.namespace}.{i}"
            clusters = _clusters(http, vs.namespace, port, services)
            if not http.match:
                out.append(Route(name, "/", clusters))
                continue
            for m in http.match:
                contexts = match_contexts(m.gateways, vs.namespace)
                if contexts is not None and context not in contexts:
                    continue
                if m.port is not None and m.port != port:
                    continue
                if m.uri is not None and m.uri.exact is not None:
                    out.append(Route(name, m.uri.exact, clusters, exact=True))
                else:
                    out.append(Route(name, m.uri.prefix if m.uri and m.uri.prefix else "/", clusters))
    return out
