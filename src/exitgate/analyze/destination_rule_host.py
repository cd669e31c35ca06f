"""IST0174 UnknownDestinationRuleHost: a DestinationRule's host matches no service (no
ServiceEntry host, mesh gateway or service of the mesh file), so it configures nothing."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, hosts_overlap
from exitgate.api.diagnostics import Severity
from exitgate.translate.registry import fqdn

CODE = "IST0174"


def check(ctx: Context) -> Iterator[Finding]:
    for dr in ctx.destination_rules:
        host = fqdn(dr.spec.host, dr.namespace)
        if not any(hosts_overlap(host, s.host) for s in ctx.services):
            yield Finding(CODE, Severity.WARNING,
                          f"The host {dr.spec.host} defined in the DestinationRule does not match any services in "
                          f"the mesh.", dr, ("spec", "host"))


ANALYZER = Analyzer(CODE, "UnknownDestinationRuleHost", "DestinationRule hosts match a service", check)
