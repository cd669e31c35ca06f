"""IST0101 ReferencedResourceNotFound: a VirtualService names a Gateway that does not exist
(``spec.gateways``; ``mesh`` is the sidecars, not a resource)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate import names
from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted
from exitgate.api.diagnostics import Severity
from exitgate.translate.snapshot import MESH, normalize_gateway

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for vs in ctx.virtual_services:
        for i, ref in enumerate(vs.spec.gateways or []):
            if ref == MESH or names.is_internal_gateway_ref(ref):
                continue
            if ctx.gateway_resource(normalize_gateway(ref, vs.namespace)) is None:
                yield Finding(CODE, Severity.ERROR, f"Referenced gateway not found: {quoted(ref)}",
                              vs, ("spec", "gateways", i))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "VirtualService gateways exist", check)
