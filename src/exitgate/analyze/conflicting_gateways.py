"""IST0145 ConflictingGateways: two Gateways for the same gateway pods have servers on the same
port with the same host (and bind address); the proxy merges the Gateways it is selected by and
keeps only one of them. As Istio's ``gateway.ConflictingGatewayAnalyzer``: hosts are compared as
written (``ns/host`` included; a wildcard overlapping a name is not a duplicate: the proxy serves
both, the more specific first), and two Gateways are for the same pods when their selectors are
identical or some pod matches both.

Istio also needs one selector's string to contain the other's before it looks for a common pod
(``app=a,istio=x`` against ``istio=x``, but not ``a=1,c=3`` against ``a=1,b=2,c=3``); exitgate
looks for a common pod whatever the selectors' spelling."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, selector_string
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import GatewaySpec, Server
from exitgate.api.resources import Resource
from exitgate.translate.snapshot import labels_match

CODE = "IST0145"


def _duplicate(a: Server, b: Server) -> bool:
    return (a.bind or "") == (b.bind or "") and any(h in b.hosts for h in a.hosts)


def _same_pods(ctx: Context, a: Resource[GatewaySpec], b: Resource[GatewaySpec]) -> bool:
    if selector_string(a.spec.selector) == selector_string(b.spec.selector):
        return True
    return any(labels_match(b.spec.selector, p.labels) for p in ctx.pods_selected(a.spec.selector))


def check(ctx: Context) -> Iterator[Finding]:
    for gw in ctx.gateways:
        selector = selector_string(gw.spec.selector)
        peers = [o for o in ctx.gateways if o.key != gw.key and _same_pods(ctx, gw, o)]
        for i, server in enumerate(gw.spec.servers):
            others = sorted(f"{o.namespace}/{o.name}" for o in peers
                            if any(s.port.number == server.port.number and _duplicate(server, s)
                                   for s in o.spec.servers))
            if others:
                yield Finding(CODE, Severity.ERROR,
                              f"Conflict with gateways {','.join(others)} (workload selector {selector}, port "
                              f"{server.port.number}, hosts {','.join(server.hosts)}).",
                              gw, ("spec", "servers", i))


ANALYZER = Analyzer(CODE, "ConflictingGateways",
                    "no two Gateways for the same pods serve the same port and host", check)
