"""IST0101 ReferencedResourceNotFound for a Sidecar's ``workloadSelector`` that selects no pod of
its namespace, as Istio's ``sidecar.SelectorAnalyzer`` reports it (any pod: a Deployment's or
Pod's of the resources, or a proxy of the mesh file): the Sidecar then applies to nobody, and the
workloads it was meant for keep the default scope and policy."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, quoted, selector_string
from exitgate.api.diagnostics import Severity

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for sc in ctx.sidecars:
        sel = sc.spec.workload_selector
        if sel is None or not sel.labels:
            continue
        if not ctx.pods_selected(sel.labels, sc.namespace):
            yield Finding(CODE, Severity.ERROR, f"Referenced selector not found: {quoted(selector_string(sel.labels))}",
                          sc, ("spec", "workloadSelector", "labels"))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "a Sidecar's workloadSelector selects a pod", check)
