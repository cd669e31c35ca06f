"""IST0132 VirtualServiceHostNotFoundInGateway: a VirtualService bound to a Gateway has hosts
that no server of that Gateway accepts (taking the ``namespace/host`` form of server hosts into
account), so those hosts get no route on the gateway."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, hosts_overlap, server_host_parts
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import GatewaySpec, VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.translate.registry import fqdn
from exitgate.translate.routing import MESH, normalize_gateway

CODE = "IST0132"


def server_accepts(gw: Resource, vs: Resource, host: str) -> bool:
    assert isinstance(gw.spec, GatewaySpec)
    for server in gw.spec.servers:
        for sh in server.hosts:
            ns, h = server_host_parts(sh)
            if ns not in (None, "*") and (gw.namespace if ns == "." else ns) != vs.namespace:
                continue
            if hosts_overlap(h, host):
                return True
    return False


def check(ctx: Context) -> Iterator[Finding]:
    for vs in ctx.virtual_services:
        assert isinstance(vs.spec, VirtualServiceSpec)
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
