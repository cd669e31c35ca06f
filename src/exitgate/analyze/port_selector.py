"""IST0112 VirtualServiceDestinationPortSelectorRequired: a route destination or http mirror
gives no port and its service has more than one (the service as ``destination_host`` finds it,
Istio's lookup)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, route_destinations
from exitgate.api.diagnostics import Severity

CODE = "IST0112"


def check(ctx: Context) -> Iterator[Finding]:
    for vs, path, d in route_destinations(ctx):
        entry = ctx.istio_destination(vs.namespace, vs.spec.export_to, d.host)
        if d.port is None and entry is not None and len(entry.ports) > 1:
            ports = " ".join(str(p) for p in entry.ports)
            yield Finding(CODE, Severity.ERROR,
                          f"This VirtualService routes to a service {quoted(d.host)} that exposes multiple "
                          f"ports [{ports}]. Specifying a port in the destination is required to "
                          f"disambiguate.", vs, path)


ANALYZER = Analyzer(CODE, "VirtualServiceDestinationPortSelectorRequired",
                    "route destinations name a port when the service has several", check)
