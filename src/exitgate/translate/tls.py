"""DestinationRule traffic policy -> the TLS a cluster originates.

Istio's layering: the top-level policy, overridden by its port-level setting for the port, then
the subset's policy the same way. Istio's current defaults: SIMPLE without ``caCertificates``
verifies against the system trust store, and SNI and SAN default to the destination host.
"""

from __future__ import annotations

from collections.abc import Callable

from exitgate import names
from exitgate.api.networking import (
    ClientTLSSettings,
    DestinationRuleSpec,
    LoadBalancerSettings,
    TrafficPolicy,
)
from exitgate.ir import SanMatch, TlsMode, UpstreamTls
from exitgate.translate.registry import Service


def _for_port(policy: TrafficPolicy | None, port: int) -> tuple[ClientTLSSettings | None, LoadBalancerSettings | None]:
    if policy is None:
        return None, None
    tls, lb = policy.tls, policy.load_balancer
    for pls in policy.port_level_settings or []:
        if pls.port is not None and pls.port.number == port:
            tls = pls.tls if pls.tls is not None else tls
            lb = pls.load_balancer if pls.load_balancer is not None else lb
    return tls, lb


def effective_policy(dr: DestinationRuleSpec | None, subset: str, port: int) -> tuple[ClientTLSSettings | None, str]:
    """(TLS settings, load-balancer policy name) for one cluster."""
    if dr is None:
        return None, "ROUND_ROBIN"
    tls, lb = _for_port(dr.traffic_policy, port)
    for s in dr.subsets or []:
        if s.name == subset:
            s_tls, s_lb = _for_port(s.traffic_policy, port)
            tls = s_tls if s_tls is not None else tls
            lb = s_lb if s_lb is not None else lb
    return tls, _lb_name(lb)


def _lb_name(lb: LoadBalancerSettings | None) -> str:
    simple = lb.simple if lb is not None else None
    return {"LEAST_CONN": "LEAST_REQUEST", "LEAST_REQUEST": "LEAST_REQUEST", "RANDOM": "RANDOM"}.get(simple or "", "ROUND_ROBIN")


def istio_sni(service: Service, port: int, subset: str) -> str:
    """Istio's default SNI for ISTIO_MUTUAL: ``outbound_.PORT_.SUBSET_.HOST``."""
    return f"outbound_.{port}_.{subset}_.{service.host}"


SYSTEM_CA = "<system>"


def upstream_tls(tls: ClientTLSSettings | None, service: Service, port: int, subset: str,
                 credential_has_ca: Callable[[str], bool] = lambda name: False) -> UpstreamTls | None:
    """``credential_has_ca(name)`` tells whether a ``credentialName`` Secret (in the proxy's
    namespace) carries a CA; without one the server is verified against the system trust store."""
    if tls is None or tls.mode in (None, "DISABLE"):
        return None
    if tls.mode == "ISTIO_MUTUAL":
        return UpstreamTls(
            mode=TlsMode.ISTIO_MUTUAL,
            sni=tls.sni or istio_sni(service, port, subset),
            client_cert_secret=names.WORKLOAD_CERT_SECRET,
            validation_secret=names.ROOT_CA_SECRET,
            san_matches=tuple(SanMatch("URI", i) for i in service.identities),
            alpn=("h2",),
        )
    mode = TlsMode(tls.mode)
    # Istio's defaults: SNI and the SAN to verify are the destination host.
    sni = tls.sni or service.host
    client = None
    if mode is TlsMode.MUTUAL:
        if tls.credential_name:
            client = names.credential_secret(tls.credential_name)
        elif tls.client_certificate and tls.private_key:
            client = names.file_cert_secret(tls.client_certificate, tls.private_key)
    if tls.insecure_skip_verify:
        return UpstreamTls(mode=mode, sni=sni, client_cert_secret=client, insecure_skip_verify=True)
    if tls.credential_name and credential_has_ca(tls.credential_name):
        # The CRL, if any, travels in the same SDS secret as the CA.
        validation = names.credential_cacert_secret(tls.credential_name)
    else:
        validation = names.file_root_secret(tls.ca_certificates or SYSTEM_CA, tls.ca_crl)
    sans = tuple(SanMatch("DNS", s) for s in (tls.subject_alt_names or [sni]))
    return UpstreamTls(mode=mode, sni=sni, client_cert_secret=client, validation_secret=validation, san_matches=sans)
