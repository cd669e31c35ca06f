"""IST0127 NoMatchingWorkloadsFound: an AuthorizationPolicy that applies to no proxy of the mesh,
as Istio's ``auth.AuthorizationPoliciesAnalyzer`` judges it:

* in the root namespace (mesh-wide), a policy with a selector when no proxy of any namespace
  matches it; a mesh-wide policy without a selector always applies;
* elsewhere, a policy with a selector when no proxy of its namespace matches it, and a policy
  without one (namespace-wide, or targetRef/targetRefs) when its namespace has no proxy at all.

A selector without labels selects every proxy. Reported as a warning, like Istio."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, selector_string
from exitgate.translate.snapshot import labels_match
from exitgate.api.diagnostics import Severity

CODE = "IST0127"


def _message(labels: str) -> str:
    return f"No matching workloads for this resource with the following labels: {labels}"


def check(ctx: Context) -> Iterator[Finding]:
    for ap in ctx.authorization_policies:
        mesh_wide = ap.namespace == ctx.mesh.root_namespace
        candidates = [p for p in ctx.proxies if mesh_wide or p.namespace == ap.namespace]
        selector = ap.spec.selector
        if selector is None:
            if not mesh_wide and not candidates:
                yield Finding(CODE, Severity.WARNING, _message(""), ap)
            continue
        labels = selector.match_labels or {}
        if not any(labels_match(labels, p.labels) for p in candidates):
            yield Finding(CODE, Severity.WARNING, _message(selector_string(labels)), ap, ("spec", "selector"))


ANALYZER = Analyzer(CODE, "NoMatchingWorkloadsFound",
                    "AuthorizationPolicies apply to a proxy of the mesh", check)
