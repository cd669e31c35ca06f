"""IST0129 NoServerCertificateVerificationPortLevel: a DestinationRule's port-level setting
originates TLS without verifying the server certificate (see ``skip_verify``)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.analyze.skip_verify import port_level
from exitgate.api.diagnostics import Severity

CODE = "IST0129"


def check(ctx: Context) -> Iterator[Finding]:
    for dr in ctx.destination_rules:
        for tls, port, path in port_level(dr.spec):
            yield Finding(CODE, Severity.WARNING,
                          f"DestinationRule {dr.namespace}/{dr.name} in namespace {dr.namespace} has TLS mode set to "
                          f"{tls.mode} but insecureSkipVerify is set, so the server identity is not validated for "
                          f"host: {dr.spec.host} at port number:{port}", dr, path)


ANALYZER = Analyzer(CODE, "NoServerCertificateVerificationPortLevel",
                    "DestinationRule TLS verifies the server (port level)", check)
