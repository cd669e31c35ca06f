"""EG0103 CredentialInOtherNamespace: a ``credentialName`` Secret exists, but not in the
namespace of a proxy that loads it. Istio (and exitgate) resolve credentialName in the proxy's
own namespace — ``istio-system`` for the default egress gateway — whatever the namespace of the
Gateway or DestinationRule; one team cannot borrow another's client certificate. The proxy gets
no certificate and the handshake fails."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, credential_uses, proxy_ref, quoted
from exitgate.api.diagnostics import Severity

CODE = "EG0103"


def check(ctx: Context) -> Iterator[Finding]:
    for use in credential_uses(ctx):
        elsewhere = sorted({s.namespace for s in ctx.secrets if s.name in use.candidates})
        if not elsewhere:
            continue  # IST0101
        for ns in use.namespaces:
            if any(ctx.secret(ns, name) is not None for name in use.candidates):
                continue
            who = ", ".join(proxy_ref(p) for p in use.proxies if p.namespace == ns)
            yield Finding(CODE, Severity.ERROR,
                          f"Secret {quoted(use.secret)} is not in namespace {quoted(ns)}, where {who} reads it "
                          f"(credentialName resolves in the proxy's own namespace); it exists only in "
                          f"{', '.join(quoted(n) for n in elsewhere)}: create it in {quoted(ns)}",
                          use.resource, use.path)


ANALYZER = Analyzer(CODE, "CredentialInOtherNamespace",
                    "credentialName Secrets are in the namespace of the proxies that load them", check)
