"""IST0128 NoServerCertificateVerificationDestinationLevel, as Istio: the top-level traffic
policy originates SIMPLE or MUTUAL TLS without ``caCertificates`` (see ``skip_verify``)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.analyze.skip_verify import istio_destination_level
from exitgate.api.diagnostics import Severity

CODE = "IST0128"


def check(ctx: Context) -> Iterator[Finding]:
    for dr in ctx.destination_rules:
        for tls in istio_destination_level(dr.spec):
            yield Finding(CODE, Severity.WARNING,
                          f"DestinationRule {dr.namespace}/{dr.name} in namespace {dr.namespace} has TLS mode set to "
                          f"{tls.mode} but no caCertificates are set to validate server identity for host: "
                          f"{dr.spec.host}", dr, ("spec", "trafficPolicy", "tls"))


ANALYZER = Analyzer(CODE, "NoServerCertificateVerificationDestinationLevel",
                    "DestinationRule TLS names a CA for the server (traffic policy level)", check)
