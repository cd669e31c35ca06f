"""IST0161 InvalidGatewayCredential: a Gateway server's ``credentialName`` Secret, found in the
gateway's namespace, holds no usable certificate and key (as Istio's ``gateway.SecretAnalyzer``:
no certificate or no key, a certificate that is not PEM, expired or not yet valid)."""

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
            cred = credential(secret.spec)
            if not cred.cert:
                problem: str | None = "the Secret has no certificate (tls.crt or cert)"
            elif not cred.key:
                problem = "the Secret has no private key (tls.key or key)"
            else:
                problem = validity_problem(cred.cert, ctx.now)
            if problem:
                yield Finding(CODE, Severity.ERROR,
                              f"The credential referenced by the Gateway {use.resource.name} in namespace {ns} is "
                              f"invalid, which can cause the traffic not to work as expected ({problem}).",
                              use.resource, use.path)


ANALYZER = Analyzer(CODE, "InvalidGatewayCredential", "Gateway server credentials hold a valid certificate and key", check)
