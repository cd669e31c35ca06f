"""EG0106 NoGatewayServerForRoute: a mesh route sends a VirtualService's host to an egress
gateway on a port where no Gateway selecting that gateway has a server accepting the host. The
gateway has no listener or no virtual host for the request and answers 404 (NR) or refuses the
connection."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, hosts_overlap, server_host_parts
from exitgate.analyze.ports import gateway_of
from exitgate.api.diagnostics import Severity
from exitgate.translate.registry import fqdn
from exitgate.translate.snapshot import MESH

CODE = "EG0106"


def check(ctx: Context) -> Iterator[Finding]:
    seen: set[tuple[object, ...]] = set()
    for edge in ctx.edges:
        if edge.context != MESH or edge.vs is None or edge.port is None:
            continue
        gateway = gateway_of(ctx, edge)
        if gateway is None or edge.service is None or edge.service.port(edge.port) is None:
            continue  # not a gateway, or IST0101 host:port
        servers = ctx.servers_on(gateway, edge.port)
        for h in edge.vs.spec.hosts:
            host = fqdn(h, edge.vs.namespace)
            if any(hosts_overlap(server_host_parts(sh)[1], host) for _, _, s in servers for sh in s.hosts):
                continue
            key = (edge.vs.key, edge.path, gateway.name, gateway.namespace, edge.port, host)
            if key in seen:
                continue
            seen.add(key)
            why = ("no Gateway selecting it has a server on that port" if not servers
                   else f"no server on that port accepts host {host}")
            yield Finding(CODE, Severity.ERROR,
                          f"requests for {host} are sent to gateway {gateway.name}.{gateway.namespace} on port "
                          f"{edge.port}, but {why}: the gateway answers 404 (NR) or refuses the connection; add a "
                          f"Gateway server for {host} on port {edge.port}",
                          edge.vs, edge.path)


ANALYZER = Analyzer(CODE, "NoGatewayServerForRoute",
                    "hosts routed to a gateway have a Gateway server on that port", check)
