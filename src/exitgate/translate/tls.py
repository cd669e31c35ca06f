"""DestinationRule traffic policy -> the TLS a cluster originates.

Istio's layering: the top-level policy, overridden by its port-level setting for the port, then
the subset's policy the same way. Istio's current defaults: SIMPLE without ``caCertificates``
verifies against the system trust store, and SNI and SAN default to the destination host.
"""

from __future__ import annotations

from dataclasses import dataclass

from exitgate import names
from exitgate.api.networking import (
    ClientTLSSettings,
    DestinationRuleSpec,
    LoadBalancerSettings,
    TrafficPolicy,
)
from exitgate.ir import SanMatch, TlsMode, UpstreamTls
from exitgate.translate.registry import Service


Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ClusterPolicy:
    """What a DestinationRule says for one cluster (subset and port): the TLS settings, where in
    the rule they are written (YAML path, empty if nowhere), and the load-balancer policy."""

    tls: ClientTLSSettings | None
    tls_path: Path
    lb: str


def _for_port(policy: TrafficPolicy | None, port: int | None,
              base: Path) -> tuple[ClientTLSSettings | None, Path, LoadBalancerSettings | None]:
    if policy is None:
        return None, (), None
    tls, where, lb = policy.tls, (base + ("tls",) if policy.tls is not None else ()), policy.load_balancer
    for k, pls in enumerate(policy.port_level_settings or []):
        if port is not None and pls.port is not None and pls.port.number == port:
            if pls.tls is not None:
                tls, where = pls.tls, base + ("portLevelSettings", k, "tls")
            lb = pls.load_balancer if pls.load_balancer is not None else lb
    return tls, where, lb


def cluster_policy(dr: DestinationRuleSpec | None, subset: str, port: int | None) -> ClusterPolicy:
    """Istio's layering: the top-level policy, overridden by its port-level setting for the
    port, then the subset's policy the same way."""
    if dr is None:
        return ClusterPolicy(None, (), "ROUND_ROBIN")
    tls, where, lb = _for_port(dr.traffic_policy, port, ("spec", "trafficPolicy"))
    for i, s in enumerate(dr.subsets or []):
        if s.name == subset:
            s_tls, s_where, s_lb = _for_port(s.traffic_policy, port, ("spec", "subsets", i, "trafficPolicy"))
            if s_tls is not None:
                tls, where = s_tls, s_where
            lb = s_lb if s_lb is not None else lb
    return ClusterPolicy(tls, where, _lb_name(lb))


def _lb_name(lb: LoadBalancerSettings | None) -> str:
    simple = lb.simple if lb is not None else None
    return {"LEAST_CONN": "LEAST_REQUEST", "LEAST_REQUEST": "LEAST_REQUEST", "RANDOM": "RANDOM"}.get(simple or "", "ROUND_ROBIN")


def istio_sni(service: Service, port: int, subset: str) -> str:
    """Istio's default SNI for ISTIO_MUTUAL: ``outbound_.PORT_.SUBSET_.HOST``."""
    return f"outbound_.{port}_.{subset}_.{service.host}"


SYSTEM_CA = "<system>"


def upstream_tls(tls: ClientTLSSettings | None, service: Service, port: int, subset: str) -> UpstreamTls | None:
    """With ``credentialName`` the server is verified only against that Secret's CA
    (``NAME-cacert`` or the Secret's ``ca.crt``), as Istio does: when there is none the SDS
    secret is never supplied and every connection fails. It never falls back to the system
    trust store, so a misspelt name cannot turn "trust this CA" into "trust every public CA"."""
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
    if tls.credential_name:
        # The CRL, if any, travels in the same SDS secret as the CA.
        validation = names.credential_cacert_secret(tls.credential_name)
    else:
        validation = names.file_root_secret(tls.ca_certificates or SYSTEM_CA, tls.ca_crl)
    sans = tuple(SanMatch("DNS", s) for s in (tls.subject_alt_names or [sni]))
    return UpstreamTls(mode=mode, sni=sni, client_cert_secret=client, validation_secret=validation, san_matches=sans)
