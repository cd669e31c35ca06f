"""IST0132 VirtualServiceHostNotFoundInGateway: a VirtualService bound to a Gateway has hosts
that no server of that Gateway accepts (taking the ``namespace/host`` form of server hosts into
account), so those hosts get no route on the gateway."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import GatewaySpec
from exitgate.api.resources import Resource
from exitgate.translate.registry import fqdn
from exitgate.translate.routing import server_host_binds
from exitgate.translate.snapshot import MESH, normalize_gateway

CODE = "IST0132"


def server_accepts(gw: Resource[GatewaySpec], vs: Resource, host: str) -> bool:
    return any(server_host_binds(sh, gw.namespace, vs.namespace, host) for server in gw.spec.servers
               for sh in server.hosts)


def check(ctx: Context) -> Iterator[Finding]:
    for vs in ctx.virtual_services:
        for i, ref in enumerate(vs.spec.gateways or []):
            if ref == MESH:
                continue
            gw = ctx.gateway_resource(normalize_gateway(ref, vs.namespace))
            if gw is None:
                continue  # IST0101
            missing = [h for h in vs.spec.hosts if not server_accepts(gw, vs, fqdn(h, vs.namespace))]
            if missing:
                yield Finding(CODE, Severity.WARNING,
                              f"one or more host [{' '.join(missing)}] defined in VirtualService "
                              f"{vs.namespace}/{vs.name} not found in Gateway {gw.namespace}/{gw.name}.",
                              vs, ("spec", "gateways", i))


ANALYZER = Analyzer(CODE, "VirtualServiceHostNotFoundInGateway",
                    "VirtualService hosts are accepted by the Gateways they bind to", check)
