"""IST0101 ReferencedResourceNotFound: a VirtualService route (tcp, tls or http) or http mirror
names a subset that no DestinationRule for its host defines (Envoy would have no such cluster:
503 NC).

Istio's ``virtualservice.DestinationRuleAnalyzer`` looks for a DestinationRule of the
VirtualService's namespace unless the host is a ``NAME.NAMESPACE.svc.cluster.local`` name;
exitgate takes a DestinationRule of any namespace whose host covers the route's (wildcards
included) and leaves whether the sending proxy sees that rule to EG0102."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, route_destinations
from exitgate.api.diagnostics import Severity
from exitgate.translate.registry import fqdn, host_matches

CODE = "IST0101"


def subset_defined(ctx: Context, host: str, subset: str) -> bool:
    for dr in ctx.destination_rules:
        if host_matches(fqdn(dr.spec.host, dr.namespace), host) and any(s.name == subset for s in dr.spec.subsets or []):
            return True
    return False


def check(ctx: Context) -> Iterator[Finding]:
    for vs, path, d in route_destinations(ctx):
        if d.subset and not subset_defined(ctx, fqdn(d.host, vs.namespace), d.subset):
            what = "mirror+subset" if {"mirror", "mirrors"} & set(path) else "host+subset"
            yield Finding(CODE, Severity.ERROR,
                          f"Referenced {what} in destinationrule not found: {quoted(f'{d.host}+{d.subset}')}",
                          vs, path + ("subset",))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "VirtualService destination subsets are defined by a DestinationRule", check)
