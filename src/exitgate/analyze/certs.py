"""Reading the PEM material of a Secret: certificates (chains and CA bundles) and keys, and the
reasons a credential is unusable. Pure: bytes and a clock in, facts out."""

from __future__ import annotations

from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exitgate.api.core import Credential


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; empty when there is none or it does not parse."""
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)


def validity_problem(pem: bytes, now: datetime) -> str | None:
    """Why the certificate(s) in ``pem`` cannot be used at ``now`` (Istio's gateway credential
    check: present, parseable, within their validity period), or None."""
    certs = load_certs(pem)
    if not certs:
        return "the certificate is not valid PEM"
    now = aware(now)
    for c in certs:
        if now > not_after(c):
            return f"the certificate {c.subject.rfc4514_string()} expired on {not_after(c):%Y-%m-%d %H:%M:%S} UTC"
        if now < not_before(c):
            return f"the certificate {c.subject.rfc4514_string()} is not valid before {not_before(c):%Y-%m-%d %H:%M:%S} UTC"
    return None


def key_problem(cred: Credential) -> str | None:
    """Why ``cred`` cannot serve as a client certificate (MUTUAL), or None."""
    if not cred.cert:
        return "it has no certificate (tls.crt or cert)"
    if not cred.key:
        return "it has no private key (tls.key or key)"
    certs = load_certs(cred.cert)
    if not certs:
        return "its certificate is not valid PEM"
    try:
        key = serialization.load_pem_private_key(cred.key, password=None)
    except (ValueError, TypeError):
        return "its private key is not a valid unencrypted PEM key"
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certs[0].public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
        return "its private key does not belong to its certificate"
    return None
