"""IST0101 ReferencedResourceNotFound: a Gateway's selector matches no gateway proxy of the
mesh, so no proxy serves it."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, selector_string
from exitgate.api.diagnostics import Severity

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for gw in ctx.gateways:
        if not ctx.selected_proxies(gw):
            yield Finding(CODE, Severity.ERROR,
                          f"Referenced selector not found: {quoted(selector_string(gw.spec.selector))}",
                          gw, ("spec", "selector"))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "Gateway selectors match a gateway proxy of the mesh", check)
