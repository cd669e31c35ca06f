"""Shared by EG0104/EG0105/EG0106: what speaks on the far end of an edge — the Gateway servers
of a gateway port, or the protocol a ServiceEntry or mesh-file service declares for a port."""

from __future__ import annotations

from dataclasses import dataclass

from exitgate.analyze.model import Context, Edge
from exitgate.api.networking import HTTP_PROTOCOLS
from exitgate.api.resources import Resource
from exitgate.mesh import GatewayProxy

TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})


@dataclass(frozen=True)
class PortInfo:
    protocol: str
    # The ServiceEntry declaring the port (None: a service of the mesh file).
    service_entry: Resource | None
    target_port: int | None

    @property
    def plaintext_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS

    @property
    def tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS


def gateway_of(ctx: Context, edge: Edge) -> GatewayProxy | None:
    return ctx.gateway_by_host.get(edge.host)


def external_port(ctx: Context, edge: Edge) -> PortInfo | None:
    """The declared protocol of the (non-gateway) destination port of ``edge``."""
    if edge.port is None or edge.service is None or edge.host in ctx.gateway_by_host:
        return None
    port = edge.service.port(edge.port)
    if port is None:
        return None
    for se in sorted(ctx.service_entries, key=lambda r: (r.namespace, r.name)):
        if edge.service.host in se.spec.hosts and se.namespace == edge.service.namespace:
            declared = next((p for p in se.spec.ports or [] if p.number == edge.port), None)
            if declared is not None:
                return PortInfo(port.protocol, se, declared.target_port)
    return PortInfo(port.protocol, None, None)
