"""EG0105 PlaintextToTlsPort: a proxy sends plain HTTP (no TLS origination in the DestinationRule
it uses, or mode DISABLE) to a port that expects TLS — a ServiceEntry or mesh-file port with
protocol HTTPS/TLS, or a gateway port whose Gateway server terminates TLS. The server rejects the
request (400 "plain HTTP request sent to HTTPS port", or a reset: 503 UF).

Towards a gateway port served with ISTIO_MUTUAL, no TLS setting is fine: Istio's auto mTLS (and
exitgate's) uses ISTIO_MUTUAL; only an explicit DISABLE sends plain HTTP there."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, originates_tls, proxy_ref, server_expects_tls
from exitgate.analyze.ports import external_port, gateway_of
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import DestinationRuleSpec
from exitgate.translate.registry import fqdn, host_matches

CODE = "EG0105"


def check(ctx: Context) -> Iterator[Finding]:
    seen: set[tuple[object, ...]] = set()
    for edge in ctx.edges:
        if edge.port is None or edge.vs is None:
            continue  # a sidecar's default route only exists for HTTP ports
        if not ctx.has_cluster(edge):
            continue
        dr, tls, _ = ctx.client_tls(edge)
        if originates_tls(tls):
            continue
        if dr is None:
            how = "no DestinationRule applies to it"
            unseen = [f"{r.namespace}/{r.name}" for r in ctx.destination_rules
                      if isinstance(r.spec, DestinationRuleSpec) and host_matches(fqdn(r.spec.host, r.namespace), edge.host)]
            if unseen:
                how += (f" (DestinationRule {', '.join(unseen)} for this host is not visible to it: a proxy looks in "
                        f"its own namespace, the service's and the root namespace)")
        elif tls is None:
            how = f"DestinationRule {dr.namespace}/{dr.name} sets no TLS for this port"
        else:
            how = f"DestinationRule {dr.namespace}/{dr.name} sets TLS mode DISABLE"
        gateway = gateway_of(ctx, edge)
        if gateway is not None:
            servers = [s for _, _, s in ctx.servers_on(gateway, edge.port)]
            if not servers or not all(server_expects_tls(s) for s in servers):
                continue
            modes = sorted({s.tls.mode for s in servers if s.tls is not None and s.tls.mode})
            peer = f"port {edge.port} of gateway {gateway.name}.{gateway.namespace}, whose server expects TLS ({', '.join(modes) or 'HTTPS'})"
            fix = "set TLS mode ISTIO_MUTUAL for this port (and subset) in the DestinationRule for the gateway host"
        else:
            info = external_port(ctx, edge)
            if info is None or not info.tls:
                continue
            declared = (f"ServiceEntry {info.service_entry.namespace}/{info.service_entry.name}"
                        if info.service_entry is not None else "the mesh file")
            peer = f"port {edge.port} of {edge.host}, which {declared} declares as {info.protocol}"
            fix = "originate TLS with a DestinationRule (mode SIMPLE or MUTUAL) for this host and port"
        key = (edge.vs.key, edge.path, edge.proxy.namespace, edge.port)
        if key in seen:
            continue
        seen.add(key)
        yield Finding(CODE, Severity.ERROR,
                      f"the {proxy_ref(edge.proxy)} sends plain HTTP to {peer}: {how}, so the server rejects it "
                      f"(400 or connection reset, 503 UF); {fix}", edge.vs, edge.path)


ANALYZER = Analyzer(CODE, "PlaintextToTlsPort", "no plain HTTP to a port that expects TLS", check)
