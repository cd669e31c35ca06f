"""EG0111 AuthorizationPolicyOnSidecar: a policy that applies to a workload's sidecar. In
exitgate sidecars carry only their workload's outbound traffic (no inbound listener), so such a
policy enforces nothing there; put it on the egress gateway, where Istio enforces egress policy."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.api.diagnostics import Severity
from exitgate.translate.authz import policy_applies

CODE = "EG0111"


def check(ctx: Context) -> Iterator[Finding]:
    for ap in ctx.authorization_policies:
        if ap.spec.target_ref is not None or ap.spec.target_refs:
            continue
        hit = [w for w in ctx.mesh.workloads
               if policy_applies(ap.namespace, ap.spec, w.namespace, w.labels, ctx.mesh.root_namespace)]
        # A mesh-wide policy without a selector is meant for every proxy; only say so when it
        # selects workloads on purpose (a selector) or lives in a workload's own namespace.
        if ap.namespace == ctx.mesh.root_namespace and ap.spec.selector is None:
            continue
        if hit:
            yield Finding(CODE, Severity.WARNING,
                          f"this policy applies to the sidecar of {', '.join(f'{w.name}.{w.namespace}' for w in hit)}, "
                          f"which has no inbound traffic in exitgate: it enforces nothing there; select the egress "
                          f"gateway instead", ap, ("spec", "selector") if ap.spec.selector is not None else ())


ANALYZER = Analyzer(CODE, "AuthorizationPolicyOnSidecar", "AuthorizationPolicies select gateways, not sidecars", check)
