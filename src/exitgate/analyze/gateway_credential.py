"""IST0161 InvalidGatewayCredential: a Gateway server's ``credentialName`` Secret, found in the
gateway's namespace, holds no usable certificate (missing, not PEM, expired or not yet valid)."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.certs import validity_problem
from exitgate.analyze.model import Context, Finding, credential_uses
from exitgate.api.core import credential
from exitgate.api.diagnostics import Severity

CODE = "IST0161"


def check(ctx: Context) -> Iterator[Finding]:
    for use in credential_uses(ctx):
        if use.client:
            continue
        for ns in use.namespaces:
            secret = ctx.secret(ns, use.secret)
            if secret is None:
                continue  # IST0101 / EG0103
            cert = credential(secret.spec).cert
            problem = "the Secret has no certificate (tls.crt or cert)" if not cert else validity_problem(cert, ctx.now)
            if problem:
                yield Finding(CODE, Severity.ERROR,
                              f"The credential referenced by the Gateway {use.resource.name} in namespace {ns} is "
                              f"invalid, which can cause the traffic not to work as expected ({problem}).",
                              use.resource, use.path)


ANALYZER = Analyzer(CODE, "InvalidGatewayCredential", "Gateway server credentials hold a valid certificate", check)
