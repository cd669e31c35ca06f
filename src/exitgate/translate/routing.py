"""VirtualService http routes -> IR routes, for one gateway context ("mesh" for sidecars,
"namespace/name" for a Gateway) and one port."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from exitgate import names
from exitgate.api.networking import HTTPRoute, VirtualServiceSpec
from exitgate.api.networking.common import Destination
from exitgate.api.networking.httproute import HTTPMatchRequest
from exitgate.api.resources import Resource
from exitgate.ir import Mirror, Route, WeightedCluster
from exitgate.translate import route_features as rf
from exitgate.translate.memo import Recorded, TranslationMemo, unchanged
from exitgate.translate.registry import Service, fqdn, host_matches
from exitgate.translate.snapshot import normalize_gateway
from exitgate.translate.traffic_policy import seconds

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


def _destination_port(host: str, given: int | None, incoming: int, services: Mapping[str, Service]) -> int:
    if given is not None:
        return given
    svc = services.get(host)
    if svc is not None and len(svc.ports) == 1:
        return svc.ports[0].number
    return incoming


def _cluster(d: Destination, vs_ns: str, incoming: int, services: Mapping[str, Service]) -> str:
    host = fqdn(d.host, vs_ns)
    port = _destination_port(host, d.port.number if d.port else None, incoming, services)
    return names.cluster_name(host, port, d.subset or "")


def _clusters(route: HTTPRoute, vs_ns: str, incoming: int, services: Mapping[str, Service]) -> tuple[WeightedCluster, ...]:
    out = []
    for d in route.route or []:
        weight = d.weight if d.weight is not None else (100 if len(route.route or []) == 1 else 0)
        out.append(WeightedCluster(_cluster(d.destination, vs_ns, incoming, services), weight))
    return tuple(out)


def _mirrors(http: HTTPRoute, vs_ns: str, incoming: int, services: Mapping[str, Service]) -> tuple[Mirror, ...]:
    """``mirror`` (with ``mirrorPercentage``/``mirrorPercent``) first, then ``mirrors``, as Istio."""
    out = []
    if http.mirror is not None:
        pct = rf.mirror_percent(http.mirror_percentage.value if http.mirror_percentage else None, http.mirror_percent)
        if pct is not None:
            out.append(Mirror(_cluster(http.mirror, vs_ns, incoming, services), pct))
    for m in http.mirrors or []:
        pct = rf.mirror_percent(m.percentage.value if m.percentage else None)
        if pct is not None:
            out.append(Mirror(_cluster(m.destination, vs_ns, incoming, services), pct))
    return tuple(out)


def _route_body(http: HTTPRoute, vs_ns: str, port: int, services: Mapping[str, Service]) -> dict[str, Any]:
    """The Route fields every match of ``http`` shares: its action and what goes with it (Istio's
    TranslateRoute: redirect, else direct response, else the destinations)."""
    ops, authority = rf.header_ops(http)
    out: dict[str, Any] = {"header_ops": ops, "fault": rf.fault(http.fault)}
    if http.redirect is not None:
        redirect = rf.redirect(http.redirect, port)
        # Istio drops the action of a redirect code it cannot express: Envoy then answers 404.
        out.update(redirect=redirect, direct_status=None if redirect else 404)
    elif http.direct_response is not None:
        body = http.direct_response.body
        out.update(direct_status=http.direct_response.status,
                   direct_body=body.string if body is not None and body.string is not None else None,
                   direct_body_base64=body.bytes if body is not None and body.string is None else None)
    else:
        out.update(clusters=_clusters(http, vs_ns, port, services),
                   timeout_s=seconds(http.timeout) if http.timeout else 0.0,
                   retry=rf.retry_policy(http.retries),
                   rewrite=rf.rewrite(http.rewrite, authority),
                   mirrors=_mirrors(http, vs_ns, port, services))
    return out


def _match_fields(m: HTTPMatchRequest | None) -> dict[str, Any]:
    out = rf.path_match(m)
    if m is not None:
        out.update(headers=rf.header_matches(m), query_params=rf.query_matches(m), stat_prefix=m.stat_prefix)
    return out


def _port_sign(svc: Service | None) -> int | None:
    # What a destination without a port reads from its service: its one port, if it has one.
    return svc.ports[0].number if svc is not None and len(svc.ports) == 1 else None


def routes_for(vss: Sequence[Resource[VirtualServiceSpec]], context: str, port: int, services: Mapping[str, Service],
               memo: TranslationMemo | None = None) -> list[Route]:
    """The IR routes of ``vss`` that apply to ``context`` on ``port``, in order. As in Istio, the
    matches of one http route are OR'd (each its own Envoy route, in order) and the conditions
    within one match AND'd. ``memo``: reuse the routes of an earlier push for the same
    VirtualService specs, when the destination services they read are the same."""
    if memo is None:
        return _routes(vss, context, port, services)
    key = ("routes", tuple((id(vs.spec), vs.namespace, vs.name) for vs in vss), context, port)

    def build() -> tuple[list[Route], dict[str, Hashable]]:
        recorded = Recorded(services, _port_sign)
        return _routes(vss, context, port, recorded), recorded.reads

    return memo.get(key, [vs.spec for vs in vss], build, lambda reads: unchanged(reads, services, _port_sign))


def _routes(vss: Sequence[Resource[VirtualServiceSpec]], context: str, port: int,
            services: Mapping[str, Service]) -> list[Route]:
    out: list[Route] = []
    for vs in vss:
        for i, http in enumerate(vs.spec.http or []):
            name = http.name or f"{vs.name}.{vs.namespace}.{i}"
            body = _route_body(http, vs.namespace, port, services)
            body["virtual_service"] = f"{vs.namespace}/{vs.name}"
            if not http.match:
                out.append(Route(name, **_match_fields(None), **body))
                continue
            for m in http.match:
                contexts = match_contexts(m.gateways, vs.namespace)
                if contexts is not None and context not in contexts:
                    continue
                if m.port is not None and m.port != port:
                    continue
                # Istio names a route by the http route's name and the match's, dot-joined.
                route_name = f"{name}.{m.name}" if m.name else name
                out.append(Route(route_name, **_match_fields(m), **body))
    return out
