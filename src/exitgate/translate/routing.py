"""VirtualService http routes -> IR routes, for one gateway context ("mesh" for sidecars,
"namespace/name" for a Gateway) and one port."""

from __future__ import annotations

from collections.abc import Sequence

from exitgate import names
from exitgate.api.networking import HTTPRoute, VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.ir import Route, WeightedCluster
from exitgate.translate.registry import Service, exported_to, fqdn, host_matches

MESH = "mesh"


def normalize_gateway(ref: str, namespace: str) -> str:
    if ref == MESH or "/" in ref:
        return ref
    return f"{namespace}/{ref}"


def vs_gateways(vs: Resource) -> list[str]:
    assert isinstance(vs.spec, VirtualServiceSpec)
    return [normalize_gateway(g, vs.namespace) for g in (vs.spec.gateways or [MESH])]


def virtual_services_for(resources: Sequence[Resource], context: str, host: str, proxy_ns: str) -> list[Resource]:
    """VirtualServices bound to ``context`` with a host matching ``host``, oldest name first."""
    out = []
    for r in resources:
        if r.kind != "VirtualService":
            continue
        assert isinstance(r.spec, VirtualServiceSpec)
        if context == MESH and not exported_to(r.namespace, r.spec.export_to, proxy_ns):
            continue
        if context not in vs_gateways(r):
            continue
        if any(host_matches(fqdn(h, r.namespace), host) for h in r.spec.hosts or []):
            out.append(r)
    return sorted(out, key=lambda r: (r.namespace, r.name))


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


def routes_for(vss: Sequence[Resource], context: str, port: int, services: dict[str, Service]) -> list[Route]:
    """The IR routes of ``vss`` that apply to ``context`` on ``port``, in order."""
    out: list[Route] = []
    for vs in vss:
        assert isinstance(vs.spec, VirtualServiceSpec)
        for i, http in enumerate(vs.spec.http or []):
            name = http.name or f"{vs.name}.{vs.namespace}.{i}"
            clusters = _clusters(http, vs.namespace, port, services)
            if not http.match:
                out.append(Route(name, "/", clusters))
                continue
            for m in http.match:
                if m.gateways and context not in [normalize_gateway(g, vs.namespace) for g in m.gateways]:
                    continue
                if m.port is not None and m.port != port:
                    continue
                if m.uri is not None and m.uri.exact is not None:
                    out.append(Route(name, m.uri.exact, clusters, exact=True))
                else:
                    out.append(Route(name, m.uri.prefix if m.uri and m.uri.prefix else "/", clusters))
    return out
