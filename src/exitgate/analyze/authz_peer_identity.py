"""EG0110 AuthorizationPolicy matches on peer identity where there is none: a policy that applies
to a gateway uses principals, namespaces (or their ``source.*`` conditions), but a server of that
gateway does not use ISTIO_MUTUAL. Requests there carry no peer certificate, so an ALLOW rule on
identity never matches (everything is denied) and a DENY rule never matches (nothing is denied)
— the trap of Istio #22609. The sidecar must reach the gateway with ISTIO_MUTUAL."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.api.diagnostics import Severity
from exitgate.api.security import AuthorizationPolicySpec
from exitgate.translate.authz import policy_applies

CODE = "EG0110"
IDENTITY_KEYS = ("source.principal", "source.namespace", "source.serviceAccount")


def uses_peer_identity(spec: AuthorizationPolicySpec) -> bool:
    for rule in spec.rules or []:
        for frm in rule.from_ or []:
            s = frm.source
            if s is not None and (s.principals or s.not_principals or s.namespaces or s.not_namespaces
                                  or s.service_accounts or s.not_service_accounts):
                return True
        if any(c.key in IDENTITY_KEYS for c in rule.when or []):
            return True
    return False


def check(ctx: Context) -> Iterator[Finding]:
    for ap in ctx.authorization_policies:
        if not uses_peer_identity(ap.spec):
            continue
        for g in ctx.mesh.gateways:
            if not policy_applies(ap.namespace, ap.spec, g.namespace, g.labels, ctx.mesh.root_namespace):
                continue
            plain = sorted({server.port.number for gw in ctx.snapshot.gateways_selecting(g)
                            for server in gw.spec.servers if server.tls is None or server.tls.mode != "ISTIO_MUTUAL"})
            if plain:
                action = ap.spec.action or "ALLOW"
                effect = "denies every request there" if action == "ALLOW" else "never matches there"
                yield Finding(CODE, Severity.WARNING,
                              f"this {action} policy matches on the peer's identity, but gateway {g.name}.{g.namespace} "
                              f"serves port {', '.join(map(str, plain))} without ISTIO_MUTUAL: requests arrive with "
                              f"no peer certificate, so the policy {effect}; serve the port with tls mode "
                              f"ISTIO_MUTUAL", ap, ("spec", "rules"))


ANALYZER = Analyzer(CODE, "AuthorizationPolicyIdentityWithoutMutualTLS",
                    "identity rules at a gateway only where the sidecar connects with ISTIO_MUTUAL", check)
