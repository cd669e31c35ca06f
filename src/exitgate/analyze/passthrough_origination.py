"""EG0101 PassthroughServerRoutesHttp: a Gateway server with TLS mode PASSTHROUGH (or
AUTO_PASSTHROUGH) has VirtualServices routing plain HTTP through it — the usual shape of an
attempt at TLS origination. A PASSTHROUGH server forwards the client's own TLS by SNI and never
sees HTTP, so its http routes never apply and it cannot originate TLS. For origination the
server must terminate the mesh's mTLS (ISTIO_MUTUAL) so the gateway reads the HTTP request, and
a DestinationRule originates TLS to the external service."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, incoming_ports, originates_tls
from exitgate.api.diagnostics import Severity
from exitgate.translate.registry import fqdn
from exitgate.translate.routing import server_host_binds
from exitgate.translate.snapshot import vs_contexts

CODE = "EG0101"
PASSTHROUGH_MODES = ("PASSTHROUGH", "AUTO_PASSTHROUGH")


def check(ctx: Context) -> Iterator[Finding]:
    for gw in ctx.gateways:
        context = f"{gw.namespace}/{gw.name}"
        for i, server in enumerate(gw.spec.servers):
            if server.tls is None or server.tls.mode not in PASSTHROUGH_MODES:
                continue
            routing = []
            for vs in ctx.virtual_services:
                if context not in vs_contexts(vs):
                    continue
                if not any(server_host_binds(sh, gw.namespace, vs.namespace, fqdn(h, vs.namespace))
                           for h in vs.spec.hosts for sh in server.hosts):
                    continue
                for http in vs.spec.http or []:
                    ports = incoming_ports(http, context, vs.namespace)
                    if ports is not None and (None in ports or server.port.number in ports):
                        routing.append(f"{vs.namespace}/{vs.name}")
                        break
            if not routing:
                continue
            origination = sorted({f"{dr.namespace}/{dr.name}" for e in ctx.edges if e.context == context
                                  for dr, tls, _ in [ctx.client_tls(e)] if dr is not None and originates_tls(tls)})
            extra = (f"; DestinationRule {', '.join(origination)} would originate TLS behind it, but no request "
                     f"reaches it") if origination else ""
            yield Finding(CODE, Severity.ERROR,
                          f"server on port {server.port.number} is TLS {server.tls.mode}, but VirtualService "
                          f"{', '.join(routing)} routes plain HTTP through it{extra}. A {server.tls.mode} server "
                          f"forwards the client's TLS by SNI and never sees HTTP: for TLS origination at the gateway "
                          f"use tls mode ISTIO_MUTUAL on this server (sidecars send plain HTTP over the mesh's mTLS) "
                          f"and originate TLS with a DestinationRule for the external host",
                          gw, ("spec", "servers", i, "tls", "mode"))


ANALYZER = Analyzer(CODE, "PassthroughServerRoutesHttp",
                    "no http routes (TLS origination) through a PASSTHROUGH gateway server", check)
