"""EG0102 SubsetRuleNotVisible: a route names a subset that a DestinationRule defines, but the
proxy sending the request resolves another rule (or none) for that host. A proxy takes the first
DestinationRule exported to it from its own namespace, then the destination service's namespace,
then the root namespace; rules are not merged. Typical case: the DestinationRule with the egress
gateway subset applied in a namespace the sidecars do not look in. Envoy has no cluster for the
subset: 503 NC."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, proxy_ref, quoted
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import DestinationRuleSpec
from exitgate.api.resources import Resource
from exitgate.translate.registry import fqdn, host_matches

CODE = "EG0102"


def _defining(ctx: Context, host: str, subset: str) -> list[Resource[DestinationRuleSpec]]:
    out = []
    for dr in ctx.destination_rules:
        if host_matches(fqdn(dr.spec.host, dr.namespace), host) and any(s.name == subset for s in dr.spec.subsets or []):
            out.append(dr)
    return out


def check(ctx: Context) -> Iterator[Finding]:
    seen: set[tuple[str, str, tuple[str | int, ...], str]] = set()
    for edge in ctx.edges:
        if not edge.subset or edge.vs is None:
            continue
        defining = _defining(ctx, edge.host, edge.subset)
        if not defining:
            continue  # IST0101
        dr = ctx.destination_rule(edge)
        if dr is not None and dr in defining:
            continue
        key = (edge.vs.namespace, edge.vs.name, edge.path, edge.proxy.namespace)
        if key in seen:
            continue
        seen.add(key)
        svc_ns = edge.service.namespace if edge.service is not None else edge.proxy.namespace
        where = ", ".join(f"{d.namespace}/{d.name}" for d in defining)
        order = (f"its own namespace ({edge.proxy.namespace}), the service's namespace ({svc_ns}) and the root "
                 f"namespace ({ctx.mesh.root_namespace})")
        if dr is None:
            found = f"finds no DestinationRule for {edge.host}"
        else:
            found = (f"uses DestinationRule {dr.namespace}/{dr.name}, which it finds first and which has no subset "
                     f"{quoted(edge.subset)} (rules are not merged)")
        yield Finding(CODE, Severity.ERROR,
                      f"the {proxy_ref(edge.proxy)} {found}: it looks in {order}, among rules exported to it. "
                      f"Subset {quoted(edge.subset)} is defined by DestinationRule {where}, which it does not use, so "
                      f"it has no cluster for the subset (503 NC)",
                      edge.vs, edge.path + ("subset",))


ANALYZER = Analyzer(CODE, "SubsetRuleNotVisible",
                    "the DestinationRule defining a routed subset is the one the sending proxy uses", check)
