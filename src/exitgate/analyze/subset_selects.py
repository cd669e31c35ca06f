"""IST0173 DestinationRuleSubsetNotSelectPods: a DestinationRule subset's labels select none of
the proxies or endpoints behind its host: a gateway proxy's labels, the pods a Kubernetes
Service of the resources selects (none when no pod is declared), a ServiceEntry's endpoint
labels. Hosts whose endpoints carry no labels in exitgate (DNS ServiceEntries, services of the
mesh file, a Service without a selector) are not judged.

Istio's ``destinationrule.PodNotSelectedAnalyzer`` matches the subset's labels against every pod
of the cluster, whatever service the pod is behind, and with the node's topology labels added;
exitgate only against the endpoints of the rule's own host, and knows no nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from exitgate import names
from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.api.diagnostics import Severity
from exitgate.api.kube import ServiceBody
from exitgate.translate.registry import fqdn, host_matches

CODE = "IST0173"


def endpoint_labels(ctx: Context, host: str) -> list[dict[str, str]] | None:
    """The label sets of the endpoints behind ``host``, or None when exitgate cannot know them."""
    gateway = ctx.gateway_by_host.get(host)
    if gateway is not None:
        return [gateway.labels]
    for svc in ctx.of_kind("Service"):
        if names.service_fqdn(svc.name, svc.namespace) == host:
            selector = cast(ServiceBody, svc.spec).spec.selector
            if not selector:
                return None
            return [dict(p.labels) for p in ctx.pods_selected(selector, svc.namespace)]
    for se in ctx.service_entries:
        if any(host_matches(h, host) for h in se.spec.hosts) and se.spec.endpoints:
            return [e.labels or {} for e in se.spec.endpoints]
    return None


def check(ctx: Context) -> Iterator[Finding]:
    for dr in ctx.destination_rules:
        labels = endpoint_labels(ctx, fqdn(dr.spec.host, dr.namespace))
        if labels is None:
            continue
        for i, subset in enumerate(dr.spec.subsets or []):
            want = subset.labels or {}
            if not any(all(have.get(k) == v for k, v in want.items()) for have in labels):
                yield Finding(CODE, Severity.ERROR,
                              f"The Subset {subset.name} defined in the DestinationRule does not select any pods. "
                              f"Which may lead to 503 UH (NoHealthyUpstream).", dr, ("spec", "subsets", i, "labels"))


ANALYZER = Analyzer(CODE, "DestinationRuleSubsetNotSelectPods",
                    "DestinationRule subsets select an endpoint of their host", check)
