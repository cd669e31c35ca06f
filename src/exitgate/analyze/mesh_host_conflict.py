"""IST0109 ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices bound to the mesh
(sidecars) define the same host where their exportTo scopes meet. Sidecars do not merge them;
which one wins is undefined.

As Istio's ``virtualservice.ConflictingMeshGatewayHostsAnalyzer``: each VirtualService's hosts
(short names completed in its namespace) are indexed by scope, ``*`` when it is exported to all
(no exportTo, or ``*`` in it), else each namespace it is exported to (``.`` its own). Two
VirtualServices conflict when they share a scope and the exact host, or when one is exported to
all and the other, exported to some namespaces, has a host that overlaps it (wildcards
included: ``*.d`` and ``*.productpage.d``)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, export_scopes, istio_hosts_match
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.translate.registry import fqdn
from exitgate.translate.snapshot import MESH, vs_contexts

CODE = "IST0109"


def check(ctx: Context) -> Iterator[Finding]:
    index: dict[tuple[str, str], list[Resource[VirtualServiceSpec]]] = {}
    for vs in ctx.virtual_services:
        if MESH not in vs_contexts(vs):
            continue
        for scope in export_scopes(vs.spec.export_to, vs.namespace):
            for h in vs.spec.hosts:
                index.setdefault((scope, fqdn(h, vs.namespace)), []).append(vs)
    reported: set[tuple[str, str]] = set()
    for (scope, host), group in sorted(index.items()):
        if scope != "*":
            group = group + [vs for (s, h), g in sorted(index.items()) if s == "*" and istio_hosts_match(host, h)
                             for vs in g]
        if len(group) < 2:
            continue
        names = ",".join(sorted({f"{v.namespace}/{v.name}" for v in group}))
        for vs in group:
            if (vs.namespace, vs.name) in reported:
                continue
            reported.add((vs.namespace, vs.name))
            yield Finding(CODE, Severity.ERROR,
                          f"The VirtualServices {names} associated with mesh gateway define the same host "
                          f"{scope}/{host} which can lead to undefined behavior. This can be fixed by merging the "
                          f"conflicting VirtualServices into a single resource.", vs, ("spec", "hosts"))


ANALYZER = Analyzer(CODE, "ConflictingMeshGatewayVirtualServiceHosts",
                    "one mesh VirtualService per host where exportTo scopes meet", check)
