"""IST0162 GatewayPortNotDefinedOnService: a Gateway server listens on a port that no Service of
the pods its selector matches declares, as a port or as a numeric target port (Istio's
``gateway.IngressGatewayPortAnalyzer``: the ports of all those pods' TCP Service ports together;
a mesh-file gateway's ports are its service's). exitgate then listens on that number directly,
which the gateway's clients do not reach through its service."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, selector_string
from exitgate.api.diagnostics import Severity

CODE = "IST0162"


def check(ctx: Context) -> Iterator[Finding]:
    for gw in ctx.gateways:
        pods = ctx.pods_selected(gw.spec.selector)
        if not pods:
            continue  # IST0101
        ports = frozenset().union(*(p.ports for p in pods))
        for i, server in enumerate(gw.spec.servers):
            n = server.port.number
            if n not in ports:
                yield Finding(CODE, Severity.WARNING,
                              f"The gateway is listening on a target port (port {n}) that is not defined in the "
                              f"Service associated with its workload instances (Pod selector "
                              f"{selector_string(gw.spec.selector)}). If you need to access the gateway port "
                              f"through the gateway Service, it will not be available.",
                              gw, ("spec", "servers", i, "port", "number"))


ANALYZER = Analyzer(CODE, "GatewayPortNotDefinedOnService", "Gateway server ports exist on the gateway's service", check)
