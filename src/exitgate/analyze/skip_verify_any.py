"""EG0112, exitgate's own: a DestinationRule originates TLS with ``insecureSkipVerify: true``
(at the traffic policy, a subset's or a port's), so the server is not verified at all. Istio's
IST0128/IST0129 warn about a missing ``caCertificates`` instead (see ``skip_verify``)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.analyze.skip_verify import destination_level, port_level
from exitgate.api.diagnostics import Severity

CODE = "EG0112"


def check(ctx: Context) -> Iterator[Finding]:
    for dr in ctx.destination_rules:
        for tls, path in destination_level(dr.spec):
            yield Finding(CODE, Severity.WARNING,
                          f"DestinationRule {dr.namespace}/{dr.name} originates {tls.mode} TLS with insecureSkipVerify: "
                          f"the server of host {dr.spec.host} is not verified", dr, path)
        for tls, port, path in port_level(dr.spec):
            yield Finding(CODE, Severity.WARNING,
                          f"DestinationRule {dr.namespace}/{dr.name} originates {tls.mode} TLS with insecureSkipVerify: "
                          f"the server of host {dr.spec.host} at port {port} is not verified", dr, path)


ANALYZER = Analyzer(CODE, "TlsWithoutServerVerification",
                    "DestinationRule TLS verifies the server (insecureSkipVerify)", check)
