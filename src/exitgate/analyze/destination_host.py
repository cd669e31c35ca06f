"""IST0101 ReferencedResourceNotFound: a VirtualService route (tcp, tls or http) or http mirror
sends to a host no service declares, or to a port that service does not have (``host:port``).

As Istio's ``virtualservice.DestinationHostAnalyzer`` looks hosts up (``Context.istio_destination``):
ServiceEntries by their exportTo and Kubernetes Services by their
``networking.istio.io/exportTo`` annotation, seen from the VirtualService's namespace, or from
the namespaces it is exported to when it has exportTo; then wildcard ServiceEntry hosts. The mesh
file's gateways and services are exported to all."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, route_destinations
from exitgate.api.diagnostics import Severity

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for vs, path, d in route_destinations(ctx):
        mirror = bool({"mirror", "mirrors"} & set(path))
        entry = ctx.istio_destination(vs.namespace, vs.spec.export_to, d.host)
        if entry is None:
            what = "mirror host" if mirror else "host"
            yield Finding(CODE, Severity.ERROR, f"Referenced {what} not found: {quoted(d.host)}", vs, path + ("host",))
        elif d.port is not None and d.port.number not in entry.ports:
            yield Finding(CODE, Severity.ERROR,
                          f"Referenced host:port not found: {quoted(f'{d.host}:{d.port.number}')}",
                          vs, path + ("port", "number"))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "VirtualService destination hosts and ports exist", check)
