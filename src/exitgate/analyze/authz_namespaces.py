"""IST0101 ReferencedResourceNotFound for an AuthorizationPolicy source's ``namespaces`` or
``notNamespaces`` entry that names no namespace of the mesh, as Istio's
``auth.AuthorizationPoliciesAnalyzer`` reports it: the rule then matches no peer (or, negated,
excludes none). An entry may be ``*``, a prefix (``prod-*``) or a suffix (``*-test``); a plain
name compares without regard to case, as Istio's.

Istio's namespaces are the cluster's Namespace objects. exitgate needs none (a namespace no
Namespace object declares exists when something is in it), so a namespace of the mesh is one a
Namespace object declares or one a pod or proxy of the mesh is in."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted
from exitgate.api.diagnostics import Severity

CODE = "IST0101"


def namespace_matches(ns: str, expr: str) -> bool:
    """Istio's ``namespaceMatch``."""
    if expr == "*":
        return True
    if expr.startswith("*"):
        return ns.endswith(expr[1:])
    if expr.endswith("*"):
        return ns.startswith(expr[:-1])
    return ns.lower() == expr.lower()


def check(ctx: Context) -> Iterator[Finding]:
    known = set(ctx.namespace_labels) | {p.namespace for p in ctx.pods}
    for ap in ctx.authorization_policies:
        for i, rule in enumerate(ap.spec.rules or []):
            for j, frm in enumerate(rule.from_ or []):
                src = frm.source
                if src is None:
                    continue
                for field, exprs in (("namespaces", src.namespaces), ("notNamespaces", src.not_namespaces)):
                    for k, expr in enumerate(exprs or []):
                        if not any(namespace_matches(ns, expr) for ns in known):
                            yield Finding(CODE, Severity.ERROR, f"Referenced namespace not found: {quoted(expr)}",
                                          ap, ("spec", "rules", i, "from", j, "source", field, k))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound",
                    "AuthorizationPolicy source namespaces name a namespace of the mesh", check)
