"""IST0145 ConflictingGateways: two Gateways with the same selector have servers on the same
port with overlapping hosts; the proxy cannot serve both."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, hosts_overlap, selector_string, server_host_parts
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import Server

CODE = "IST0145"


def _overlap(a: Server, b: Server) -> bool:
    return any(hosts_overlap(server_host_parts(x)[1], server_host_parts(y)[1]) for x in a.hosts for y in b.hosts)


def check(ctx: Context) -> Iterator[Finding]:
    for gw in ctx.gateways:
        selector = selector_string(gw.spec.selector)
        for i, server in enumerate(gw.spec.servers):
            others = []
            for other in ctx.gateways:
                if other.key == gw.key or selector_string(other.spec.selector) != selector:
                    continue
                if any(s.port.number == server.port.number and _overlap(server, s) for s in other.spec.servers):
                    others.append(f"{other.namespace}/{other.name}")
            if others:
                yield Finding(CODE, Severity.ERROR,
                              f"Conflict with gateways {','.join(others)} (workload selector {selector}, port "
                              f"{server.port.number}, hosts {','.join(server.hosts)}).",
                              gw, ("spec", "servers", i))


ANALYZER = Analyzer(CODE, "ConflictingGateways",
                    "no two Gateways with one selector serve the same port and host", check)
