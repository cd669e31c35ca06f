"""IST0101 ReferencedResourceNotFound: a Gateway's selector matches no pod at all, as Istio's
``gateway.IngressGatewayPortAnalyzer`` and ``gateway.SecretAnalyzer`` judge it: a pod of any
namespace (a Deployment's or Pod's of the resources, or a proxy of the mesh file). No proxy then
serves the Gateway.

exitgate's mesh is its cluster: when analyzing files, only the mesh file's gateways (by default
``istio-egressgateway``) and the files' Deployments and Pods exist. istioctl adds a default
ingress gateway pod (``istio: ingressgateway``) for files-only analysis; exitgate runs no
ingress gateway unless one is declared, so a Gateway for it is reported."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, selector_string
from exitgate.api.diagnostics import Severity

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for gw in ctx.gateways:
        if not ctx.pods_selected(gw.spec.selector):
            yield Finding(CODE, Severity.ERROR,
                          f"Referenced selector not found: {quoted(selector_string(gw.spec.selector))}",
                          gw, ("spec", "selector"))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "Gateway selectors match a pod of the mesh", check)
