"""DestinationRule traffic policy -> the TLS a cluster originates.

Which TLS settings apply to a cluster is Istio's layering, in ``traffic_policy.cluster_policy``
(re-exported here for the analyzers). Istio's current defaults: SIMPLE without
``caCertificates`` verifies against the system trust store, and SNI and SAN default to the
destination host.
"""

from __future__ import annotations

from exitgate import names
from exitgate.api.networking import ClientTLSSettings
from exitgate.ir import DiscoveryType, SanMatch, TlsMode, UpstreamTls
from exitgate.translate.registry import Service
from exitgate.translate.traffic_policy import ClusterPolicy, cluster_policy

__all__ = ["SYSTEM_CA", "ClusterPolicy", "cluster_policy", "istio_sni", "upstream_tls"]


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
    # Istio's defaults: SNI and the SAN to verify are the destination host. A service resolved
    # per request (resolution NONE or DYNAMIC_DNS, wildcard hosts) has no one host: Envoy's
    # auto_sni and auto_san_validation use the host each request names.
    dynamic = service.discovery is DiscoveryType.DYNAMIC_FORWARD_PROXY
    sni = tls.sni or (None if dynamic else service.host)
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
    sans = tuple(SanMatch("DNS", s) for s in (tls.subject_alt_names or ([sni] if sni else [])))
    return UpstreamTls(mode=mode, sni=sni, client_cert_secret=client, validation_secret=validation, san_matches=sans)
