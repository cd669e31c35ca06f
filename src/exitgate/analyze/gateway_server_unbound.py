"""EG0107 GatewayServerWithoutVirtualService: a Gateway server that no VirtualService binds to
(bound to the Gateway, with a host the server accepts and a rule for its port). The gateway
listens but has no route for the server's hosts and answers 404 (NR)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, hosts_overlap, incoming_ports, server_host_parts
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import GatewaySpec, Server, VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.translate.registry import fqdn
from exitgate.translate.routing import vs_gateways

CODE = "EG0107"


def binds(vs: Resource, gw: Resource, server: Server) -> bool:
    assert isinstance(vs.spec, VirtualServiceSpec)
    context = f"{gw.namespace}/{gw.name}"
    if context not in vs_gateways(vs):
        return False
    accepted = False
    for sh in server.hosts:
        ns, h = server_host_parts(sh)
        if ns not in (None, "*") and (gw.namespace if ns == "." else ns) != vs.namespace:
            continue
        accepted = accepted or any(hosts_overlap(h, fqdn(vh, vs.namespace)) for vh in vs.spec.hosts)
    if not accepted:
        return False
    if vs.spec.tls or vs.spec.tcp:
        return True
    for http in vs.spec.http or []:
        ports = incoming_ports(http, context, vs.namespace)
        if ports is not None and (None in ports or server.port.number in ports):
            return True
    return False


def check(ctx: Context) -> Iterator[Finding]:
    for gw in ctx.gateways:
        assert isinstance(gw.spec, GatewaySpec)
        for i, server in enumerate(gw.spec.servers):
            if not any(binds(vs, gw, server) for vs in ctx.virtual_services):
                yield Finding(CODE, Severity.WARNING,
                              f"no VirtualService is bound to this server (port {server.port.number}, hosts "
                              f"{', '.join(server.hosts)}): the gateway accepts the connections but has no route "
                              f"for them and answers 404 (NR)", gw, ("spec", "servers", i))


ANALYZER = Analyzer(CODE, "GatewayServerWithoutVirtualService", "every Gateway server has a VirtualService bound", check)
