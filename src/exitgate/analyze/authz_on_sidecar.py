"""EG0111 AuthorizationPolicyOnSidecar: a policy that applies to a workload's sidecar. In
exitgate sidecars carry only their workload's outbound traffic (no inbound listener), so such a
policy enforces nothing there; put it on the egress gateway, where Istio enforces egress policy."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.api.diagnostics import Severity
from exitgate.translate.authz import policies_on_sidecar

CODE = "EG0111"


def check(ctx: Context) -> Iterator[Finding]:
    hits: dict[tuple[str, str], list[str]] = {}
    for w in ctx.mesh.workloads:
        for ap in policies_on_sidecar(ctx.authorization_policies, w.namespace, w.labels, ctx.mesh.root_namespace):
            hits.setdefault((ap.namespace, ap.name), []).append(f"{w.name}.{w.namespace}")
    for ap in ctx.authorization_policies:
        workloads = hits.get((ap.namespace, ap.name))
        if workloads:
            yield Finding(CODE, Severity.WARNING,
                          f"this policy applies to the sidecar of {', '.join(workloads)}, which has no inbound "
                          f"traffic in exitgate: it enforces nothing there; select the egress gateway instead",
                          ap, ("spec", "selector") if ap.spec.selector is not None else ())


ANALYZER = Analyzer(CODE, "AuthorizationPolicyOnSidecar", "AuthorizationPolicies select gateways, not sidecars", check)
