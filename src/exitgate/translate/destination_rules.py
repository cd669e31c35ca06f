"""Istio's merging of DestinationRules for the same host in the same namespace
(``PushContext.mergeDestinationRule``): a per-host DestinationRule that adds its own subset of
the egress gateway (Istio's per-host egress tasks do this) adds to the first rule instead of
being shadowed by it.

The rules, in Istio's order (creation time; here namespace and name), fold into the first:
- subsets are concatenated; a subset name already there keeps the first rule's (Istio counts
  the duplicate in a metric and goes on);
- the top-level traffic policy is the first rule's, or the first one given;
- everything else (exportTo, the name that ``proxy-config`` shows) is the first rule's.
Rules merge only when their ``exportTo`` are the same; a rule exported more widely than an
earlier one is merged into it and kept on its own as well (Istio's enhanced merge, on by
default). Workload selectors are not supported by exitgate (reported as such when applied), so
every rule here applies to every workload, as two rules without selectors do in Istio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from exitgate.api.networking import DestinationRuleSpec
from exitgate.api.resources import Resource

Rule = Resource[DestinationRuleSpec]


def export_set(rule: Rule) -> frozenset[str]:
    """``exportTo`` as the namespaces it names (``.`` is the rule's own; none means ``*``)."""
    values = rule.spec.export_to or ["*"]
    return frozenset(rule.namespace if v == "." else v for v in values)


def _fold(into: Rule, rule: Rule) -> Rule:
    subsets = list(into.spec.subsets or [])
    have = {s.name for s in subsets}
    subsets += [s for s in rule.spec.subsets or [] if s.name not in have]
    policy = into.spec.traffic_policy if into.spec.traffic_policy is not None else rule.spec.traffic_policy
    spec = into.spec.model_copy(update={"subsets": subsets or None, "traffic_policy": policy})
    return replace(into, spec=spec)


def merge(rules: Sequence[Rule]) -> list[Rule]:
    """The rules of one namespace for one host, in Istio's order, as Istio consolidates them."""
    out: list[tuple[Rule, frozenset[str]]] = []
    for rule in rules:
        exported = export_set(rule)
        separately = True
        for i, (into, into_exported) in enumerate(out):
            if exported == into_exported:
                separately = False
            elif not exported > into_exported:
                continue  # neither the same nor wider: a rule of its own
            out[i] = (_fold(into, rule), into_exported)
        if separately:
            out.append((rule, exported))
    return [r for r, _ in out]
