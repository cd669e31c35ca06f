"""Shared by IST0128/IST0129: the TLS settings of a DestinationRule that originate TLS without
verifying the server.

Istio's analyzers flag SIMPLE/MUTUAL without ``caCertificates``. Since Istio 1.21
(VERIFY_CERT_AT_CLIENT on by default), and in exitgate, an unset ``caCertificates`` means the
system trust store verifies the server; the server goes unverified only with
``insecureSkipVerify: true``, so that is what these codes report here.
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
