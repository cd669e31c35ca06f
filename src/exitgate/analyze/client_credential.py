"""EG0109 InvalidClientCredential: a DestinationRule with TLS mode MUTUAL names a
``credentialName`` Secret (found in the proxy's namespace) that cannot serve as a client
certificate: no certificate or key, not PEM, or a key that does not belong to the certificate.
The proxy would present nothing and the server refuses the handshake."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.certs import key_problem
from exitgate.analyze.model import Context, Finding, credential_uses
from exitgate.api.core import credential
from exitgate.api.diagnostics import Severity

CODE = "EG0109"


def check(ctx: Context) -> Iterator[Finding]:
    for use in credential_uses(ctx):
        if not use.client or use.mode != "MUTUAL":
            continue
        for ns in use.namespaces:
            secret = ctx.secret(ns, use.secret)
            if secret is None:
                continue  # IST0101 / EG0103
            problem = key_problem(credential(secret.spec))
            if problem:
                yield Finding(CODE, Severity.ERROR,
                              f"Secret {ns}/{use.secret} cannot be used as a client certificate for MUTUAL TLS: "
                              f"{problem}", use.resource, use.path)


ANALYZER = Analyzer(CODE, "InvalidClientCredential",
                    "MUTUAL DestinationRule credentials hold a certificate and its key", check)
