"""IST0101 ReferencedResourceNotFound for a Sidecar's ``workloadSelector`` that selects no
workload of its namespace, as Istio's ``sidecar.SelectorAnalyzer`` reports it: the Sidecar then
applies to nobody, and the workloads it was meant for keep the default scope and policy."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, selector_string
from exitgate.api.diagnostics import Severity
from exitgate.translate.snapshot import labels_match

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for sc in ctx.sidecars:
        sel = sc.spec.workload_selector
        if sel is None or not sel.labels:
            continue
        if not any(w.namespace == sc.namespace and labels_match(sel.labels, w.labels) for w in ctx.mesh.workloads):
            yield Finding(CODE, Severity.ERROR, f"Referenced selector not found: {selector_string(sel.labels)!r}",
                          sc, ("spec", "workloadSelector", "labels"))


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "a Sidecar's workloadSelector selects a workload", check)
