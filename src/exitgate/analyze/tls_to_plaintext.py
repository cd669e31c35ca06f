"""EG0104 TlsToPlaintextPort: a proxy originates TLS (DestinationRule SIMPLE, MUTUAL or
ISTIO_MUTUAL) to a port that speaks plain HTTP — a ServiceEntry port with protocol HTTP and no
``targetPort``, or a gateway port whose Gateway server has no TLS. The peer answers the TLS
ClientHello in plain text: WRONG_VERSION_NUMBER in Envoy's log, 503 UF to the client."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding, originates_tls, proxy_ref
from exitgate.analyze.ports import external_port, gateway_of
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import ClientTLSSettings

CODE = "EG0104"


def check(ctx: Context) -> Iterator[Finding]:
    seen: set[tuple[object, ...]] = set()
    for edge in ctx.edges:
        if edge.port is None:
            continue
        if not ctx.has_cluster(edge):
            continue
        dr, tls, where = ctx.client_tls(edge)
        if dr is None or not originates_tls(tls):
            continue
        assert isinstance(tls, ClientTLSSettings)
        origin = f"TLS {tls.mode} (DestinationRule {dr.namespace}/{dr.name})"
        gateway = gateway_of(ctx, edge)
        if gateway is not None:
            servers = ctx.servers_on(gateway, edge.port)
            if not servers or any(s.tls is not None or s.port.protocol in ("HTTPS", "TLS") for _, _, s in servers):
                continue
            names = ", ".join(sorted({f"{g.namespace}/{g.name}" for g, _, _ in servers}))
            peer = (f"port {edge.port} of gateway {gateway.name}.{gateway.namespace}, whose server (Gateway {names}) "
                    f"has no TLS")
            fix = "set tls mode ISTIO_MUTUAL (protocol HTTPS) on the Gateway server"
        else:
            info = external_port(ctx, edge)
            if info is None or info.service_entry is None or not info.plaintext_http:
                continue
            if info.target_port is not None and info.target_port != edge.port:
                continue  # Istio's egress TLS origination pattern: port 80 (HTTP) -> targetPort 443
            se = info.service_entry
            peer = (f"port {edge.port} of {edge.host}, which ServiceEntry {se.namespace}/{se.name} declares as plain "
                    f"{info.protocol}")
            fix = "route to the service's TLS port (e.g. 443, protocol HTTPS) and originate TLS there"
        key = (edge.vs.key if edge.vs else dr.key, edge.path if edge.vs else where, edge.host, edge.port)
        if key in seen:
            continue
        seen.add(key)
        message = (f"the {proxy_ref(edge.proxy)} originates {origin} to {peer}: the peer answers in plain text "
                   f"(WRONG_VERSION_NUMBER, 503 UF); {fix}")
        if edge.vs is not None:
            yield Finding(CODE, Severity.ERROR, message, edge.vs, edge.path)
        else:
            yield Finding(CODE, Severity.ERROR, message, dr, where)


ANALYZER = Analyzer(CODE, "TlsToPlaintextPort", "no TLS origination to a port that speaks plain HTTP", check)
