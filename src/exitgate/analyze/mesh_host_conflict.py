"""IST0109 ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices bound to the mesh
(sidecars) define the same host in overlapping exportTo scopes. Sidecars do not merge them;
which one wins is undefined."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import VirtualServiceSpec
from exitgate.api.resources import Resource
from exitgate.translate.registry import fqdn
from exitgate.translate.snapshot import MESH, vs_contexts

CODE = "IST0109"


def _scopes(vs: Resource[VirtualServiceSpec]) -> list[str]:
    export = vs.spec.export_to
    if not export or "*" in export:
        return ["*"]
    return sorted({vs.namespace if e == "." else e for e in export})


def check(ctx: Context) -> Iterator[Finding]:
    by_host: dict[tuple[str, str], list[Resource[VirtualServiceSpec]]] = {}
    for vs in ctx.virtual_services:
        if MESH not in vs_contexts(vs):
            continue
        for scope in _scopes(vs):
            for h in vs.spec.hosts:
                group = by_host.setdefault((scope, fqdn(h, vs.namespace)), [])
                if vs not in group:
                    group.append(vs)
    for (scope, host), group in sorted(by_host.items()):
        if len(group) < 2:
            continue
        names = ",".join(f"{v.namespace}/{v.name}" for v in group)
        for vs in group:
            yield Finding(CODE, Severity.ERROR,
                          f"The VirtualServices {names} associated with mesh gateway define the same host "
                          f"{scope}/{host} which can lead to undefined behavior. This can be fixed by merging the "
                          f"conflicting VirtualServices into a single resource.", vs, ("spec", "hosts"))


ANALYZER = Analyzer(CODE, "ConflictingMeshGatewayVirtualServiceHosts",
                    "one mesh VirtualService per host and exportTo scope", check)
