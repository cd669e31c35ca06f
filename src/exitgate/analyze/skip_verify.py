"""Shared by IST0128/IST0129 and EG0112: TLS origination whose server verification rests on
less than a CA the rule names.

IST0128/IST0129 keep Istio's meaning (its CaCertificateAnalyzer): SIMPLE or MUTUAL in the
top-level traffic policy (IST0128) or one of its port-level settings (IST0129) without
``caCertificates`` (unless a ``credentialName`` with a workload selector brings the CA). Since
Istio 1.21 (VERIFY_CERT_AT_CLIENT), as in exitgate, such a server is still verified against the
system trust store; Istio warns that nothing more specific pins it.

EG0112 is exitgate's own: ``insecureSkipVerify: true`` at any level (subsets included), where
the server is not verified at all.
"""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.model import Path
from exitgate.api.networking import ClientTLSSettings, DestinationRuleSpec, TrafficPolicy


def _policies(dr: DestinationRuleSpec) -> Iterator[tuple[TrafficPolicy, Path]]:
    if dr.traffic_policy is not None:
        yield dr.traffic_policy, ("spec", "trafficPolicy")
    for i, s in enumerate(dr.subsets or []):
        if s.traffic_policy is not None:
            yield s.traffic_policy, ("spec", "subsets", i, "trafficPolicy")


def unverified(tls: ClientTLSSettings | None) -> bool:
    return tls is not None and tls.mode in ("SIMPLE", "MUTUAL") and bool(tls.insecure_skip_verify)


def without_ca(tls: ClientTLSSettings | None, has_selector: bool) -> bool:
    """Istio's condition: SIMPLE/MUTUAL, no caCertificates, and not a credentialName with a
    workload selector (whose Secret's ca.crt is the CA)."""
    return (tls is not None and tls.mode in ("SIMPLE", "MUTUAL") and not tls.ca_certificates
            and not (tls.credential_name and has_selector))


def istio_destination_level(dr: DestinationRuleSpec) -> Iterator[ClientTLSSettings]:
    policy = dr.traffic_policy
    if policy is not None and policy.tls is not None and without_ca(policy.tls, dr.workload_selector is not None):
        yield policy.tls


def istio_port_level(dr: DestinationRuleSpec) -> Iterator[tuple[ClientTLSSettings, int, int | None]]:
    """(tls, index in portLevelSettings, port number) of the top-level policy's port settings."""
    policy = dr.traffic_policy
    for k, pls in enumerate(policy.port_level_settings or [] if policy is not None else []):
        if pls.tls is not None and without_ca(pls.tls, dr.workload_selector is not None):
            yield pls.tls, k, pls.port.number if pls.port else None


def destination_level(dr: DestinationRuleSpec) -> Iterator[tuple[ClientTLSSettings, Path]]:
    for policy, base in _policies(dr):
        if policy.tls is not None and unverified(policy.tls):
            yield policy.tls, base + ("tls", "insecureSkipVerify")


def port_level(dr: DestinationRuleSpec) -> Iterator[tuple[ClientTLSSettings, int | None, Path]]:
    for policy, base in _policies(dr):
        for k, pls in enumerate(policy.port_level_settings or []):
            if pls.tls is not None and unverified(pls.tls):
                yield pls.tls, pls.port.number if pls.port else None, base + ("portLevelSettings", k, "tls",
                                                                              "insecureSkipVerify")
