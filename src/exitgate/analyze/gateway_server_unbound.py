"""EG0107 GatewayServerWithoutVirtualService: a Gateway server that no VirtualService binds to
(bound to the Gateway, with a host the server accepts and a rule for its port). The gateway
listens but has no route for the server's hosts and answers 404 (NR)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, incoming_ports
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import Server, VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.translate.registry import fqdn
from exitgate.translate.routing import server_host_binds
from exitgate.translate.snapshot import vs_contexts

CODE = "EG0107"


def binds(vs: Resource[VirtualServiceSpec], gw: Resource, server: Server) -> bool:
    context = f"{gw.namespace}/{gw.name}"
    if context not in vs_contexts(vs):
        return False
    # The translator's rule for which VirtualServices a server's hosts let bind.
    if not any(server_host_binds(sh, gw.namespace, vs.namespace, fqdn(vh, vs.namespace))
               for sh in server.hosts for vh in vs.spec.hosts):
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
        for i, server in enumerate(gw.spec.servers):
            if not any(binds(vs, gw, server) for vs in ctx.virtual_services):
                yield Finding(CODE, Severity.WARNING,
                              f"no VirtualService is bound to this server (port {server.port.number}, hosts "
                              f"{', '.join(server.hosts)}): the gateway accepts the connections but has no route "
                              f"for them and answers 404 (NR)", gw, ("spec", "servers", i))


ANALYZER = Analyzer(CODE, "GatewayServerWithoutVirtualService", "every Gateway server has a VirtualService bound", check)
