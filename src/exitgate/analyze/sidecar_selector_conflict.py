"""IST0110 ConflictingSidecarWorkloadSelectors: two or more Sidecars of a namespace whose
workloadSelectors select the same pod of that namespace. Which one the proxy uses is undefined.
As Istio's ``sidecar.SelectorAnalyzer``: Sidecars without a selector, or with one that has no
labels, are left out (IST0111 covers the former), and so are pods in ambient mode (annotation
``ambient.istio.io/redirection: enabled``), which have no sidecar."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted
from exitgate.api.diagnostics import Severity
from exitgate.api.resources import Resource
from exitgate.api.sidecar import SidecarSpec

CODE = "IST0110"


def check(ctx: Context) -> Iterator[Finding]:
    # (namespace, pod name) -> the Sidecars selecting it.
    selecting: dict[tuple[str, str], list[Resource[SidecarSpec]]] = {}
    for sc in sorted(ctx.sidecars, key=lambda r: (r.namespace, r.name)):
        sel = sc.spec.workload_selector
        if sel is None or not sel.labels:
            continue
        for pod in ctx.pods_selected(sel.labels, sc.namespace):
            if not pod.ambient:
                selecting.setdefault((pod.namespace, pod.name), []).append(sc)
    for (ns, pod_name), group in sorted(selecting.items()):
        if len(group) < 2:
            continue
        names = "[" + " ".join(sc.name for sc in group) + "]"
        for sc in group:
            yield Finding(CODE, Severity.ERROR,
                          f"The Sidecars {names} in namespace {quoted(ns)} select the same workload "
                          f"pod {quoted(pod_name)}, which can lead to undefined behavior.",
                          sc, ("spec", "workloadSelector"))


ANALYZER = Analyzer(CODE, "ConflictingSidecarWorkloadSelectors",
                    "no two Sidecars of a namespace select the same workload", check)
