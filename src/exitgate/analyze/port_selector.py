"""IST0112 VirtualServiceDestinationPortSelectorRequired: a route destination gives no port and
its service has more than one."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, route_destinations
from exitgate.api.diagnostics import Severity
from exitgate.translate.registry import fqdn

CODE = "IST0112"


def check(ctx: Context) -> Iterator[Finding]:
    for vs, path, d in route_destinations(ctx):
        svc = ctx.service(fqdn(d.host, vs.namespace), vs.namespace)
        if d.port is None and svc is not None and len(svc.ports) > 1:
            ports = " ".join(str(p.number) for p in svc.ports)
            yield Finding(CODE, Severity.ERROR,
                          f"This VirtualService routes to a service {quoted(d.host)} that exposes multiple "
                          f"ports [{ports}]. Specifying a port in the destination is required to "
                          f"disambiguate.", vs, path)


ANALYZER = Analyzer(CODE, "VirtualServiceDestinationPortSelectorRequired",
                    "route destinations name a port when the service has several", check)
