"""IST0111 MultipleSidecarsWithoutWorkloadSelectors: more than one Sidecar without a
workloadSelector in a namespace. Each would be the namespace's default; which one applies is
undefined. As Istio's ``sidecar.SelectorAnalyzer``, except that only an absent workloadSelector
counts: one without labels is a selector that selects every workload, as Istio's proxies apply
it (Istio's analyzer counts it as a namespace default since 1.21). Namespaces in ambient mode
(label ``istio.io/dataplane-mode: ambient``, no ``istio-injection: enabled``, no
``istio.io/rev``) are left out: their pods have no sidecar."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted
from exitgate.api.diagnostics import Severity
from exitgate.api.resources import Resource
from exitgate.api.sidecar import SidecarSpec

CODE = "IST0111"


def ambient_namespace(labels: dict[str, str] | None) -> bool:
    """Istio's ``util.NamespaceInAmbientMode`` for a Namespace object's labels."""
    if labels is None or labels.get("istio-injection") == "enabled" or labels.get("istio.io/rev"):
        return False
    return labels.get("istio.io/dataplane-mode") == "ambient"


def check(ctx: Context) -> Iterator[Finding]:
    by_namespace: dict[str, list[Resource[SidecarSpec]]] = {}
    for sc in sorted(ctx.sidecars, key=lambda r: (r.namespace, r.name)):
        if sc.spec.workload_selector is None:
            by_namespace.setdefault(sc.namespace, []).append(sc)
    for ns, group in sorted(by_namespace.items()):
        if len(group) < 2 or ambient_namespace(ctx.namespace_labels.get(ns)):
            continue
        names = "[" + " ".join(sc.name for sc in group) + "]"
        for sc in group:
            yield Finding(CODE, Severity.ERROR,
                          f"The Sidecars {names} in namespace {quoted(ns)} have no workload selector, which can "
                          f"lead to undefined behavior.", sc)


ANALYZER = Analyzer(CODE, "MultipleSidecarsWithoutWorkloadSelectors",
                    "at most one Sidecar without a workloadSelector per namespace", check)
