"""IST0101 ReferencedResourceNotFound: a VirtualService route sends to a host no service
declares (ServiceEntry exported to the VirtualService's namespace, a mesh gateway, a service of
the mesh file), or to a port that service does not have (``host:port``)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, route_destinations
from exitgate.api.diagnostics import Severity
from exitgate.translate.registry import fqdn

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for vs, path, d in route_destinations(ctx):
        svc = ctx.service(fqdn(d.host, vs.namespace), vs.namespace)
        if svc is None:
            yield Finding(CODE, Severity.ERROR, f"Referenced host not found: {quoted(d.host)}", vs, path + ("host",))
        elif d.port is not None and svc.ports and svc.port(d.port.number) is None:
            yield Finding(CODE, Severity.ERROR,
                          f"Referenced host:port not found: {quoted(f'{d.host}:{d.port.number}')}",
                          vs, path + ("port", "number"))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "VirtualService destination hosts and ports exist", check)
