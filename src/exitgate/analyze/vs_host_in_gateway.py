"""IST0132 VirtualServiceHostNotFoundInGateway: a VirtualService bound to a Gateway none of
whose hosts a server of that Gateway accepts (taking the ``namespace/host`` form of server hosts
into account), so the binding routes nothing on that gateway. As Istio's
``virtualservice.GatewayAnalyzer``: one accepted host is enough (a VirtualService bound to two
Gateways, or to a Gateway and the mesh, often has hosts for each), and a Gateway that does not
exist accepts no host (it gets IST0101 too)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate import names
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
            if ref == MESH or names.is_internal_gateway_ref(ref):
                continue
            context = normalize_gateway(ref, vs.namespace)
            gw = ctx.gateway_resource(context)
            if gw is None or not any(server_accepts(gw, vs, fqdn(h, vs.namespace)) for h in vs.spec.hosts):
                yield Finding(CODE, Severity.WARNING,
                              f"one or more host [{' '.join(vs.spec.hosts)}] defined in VirtualService "
                              f"{vs.namespace}/{vs.name} not found in Gateway {context}.",
                              vs, ("spec", "gateways", i))


ANALYZER = Analyzer(CODE, "VirtualServiceHostNotFoundInGateway",
                    "each Gateway a VirtualService binds to accepts one of its hosts", check)
