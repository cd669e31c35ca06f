"""IST0101 ReferencedResourceNotFound: a ``credentialName`` (Gateway server or DestinationRule)
names a Secret that exists in no namespace at all. (One that exists, but elsewhere than the
proxy's namespace, is EG0103.)"""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, credential_uses, quoted
from exitgate.api.diagnostics import Severity

CODE = "IST0101"


def check(ctx: Context) -> Iterator[Finding]:
    for use in credential_uses(ctx):
        if not any(s.name in use.candidates for s in ctx.secrets):
            yield Finding(CODE, Severity.ERROR, f"Referenced credentialName not found: {quoted(use.secret)}",
                          use.resource, use.path)


ANALYZER = Analyzer(CODE, "ReferencedResourceNotFound", "credentialName Secrets exist", check)
