"""IST0129 NoServerCertificateVerificationPortLevel, as Istio: a port-level setting of the
top-level traffic policy originates SIMPLE or MUTUAL TLS without ``caCertificates`` (see
``skip_verify``)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.analyze.skip_verify import istio_port_level
from exitgate.api.diagnostics import Severity

CODE = "IST0129"


def check(ctx: Context) -> Iterator[Finding]:
    for dr in ctx.destination_rules:
        for tls, k, port in istio_port_level(dr.spec):
            # Istio prints the PortSelector message: "number:443".
            yield Finding(CODE, Severity.WARNING,
                          f"DestinationRule {dr.namespace}/{dr.name} in namespace {dr.namespace} has TLS mode set to "
                          f"{tls.mode} but no caCertificates are set to validate server identity for host: "
                          f"{dr.spec.host} at port number:{port}", dr,
                          ("spec", "trafficPolicy", "portLevelSettings", k, "tls"))


ANALYZER = Analyzer(CODE, "NoServerCertificateVerificationPortLevel",
                    "DestinationRule TLS names a CA for the server (port level)", check)
