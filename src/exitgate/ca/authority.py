"""The mesh CA: a self-signed ECDSA P-256 root, and SPIFFE workload certificates signed by it.

This is Istio's self-signed ``istiod`` CA, standalone. The root lives in a directory as
``root-cert.pem`` and ``root-key.pem`` (0700 directory, 0600 key) and is reused across restarts,
so proxies that already trust it keep working. Workload certificates follow Istio's shape: empty
subject, the identity only in a critical URI SAN ``spiffe://TD/ns/NS/sa/SA``, server and client
auth, a short lifetime, rotated at half of it (see ``IssuedCert.needs_rotation``).

Nothing happens at import time; the CA's state is the ``MeshCA`` object and its two files.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exitgate.ca.certs import (
    CLOCK_SKEW,
    authority_key_id,
    ca_key_usage,
    cert_to_pem,
    key_to_pem,
    same_public_key,
    utcnow,
    write_atomic,
    write_private,
)
from exitgate.names import DEFAULT_TRUST_DOMAIN, SpiffeId, parse_spiffe_id, spiffe_id

ROOT_CERT_FILE = "root-cert.pem"
ROOT_KEY_FILE = "root-key.pem"
ROOT_ORG = "exitgate"
ROOT_COMMON_NAME = "exitgate mesh root"
ROOT_VALIDITY = timedelta(days=3650)

# Istio's SECRET_GRACE_PERIOD_RATIO default: rotate once half of the lifetime has gone by.
DEFAULT_ROTATION_RATIO = 0.5


def _require_aware(value: datetime, what: str) -> None:
    # Certificates carry UTC instants; a naive datetime would be silently read as local time by
    # some code paths and as UTC by others, so refuse it outright.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")


@dataclass(frozen=True)
class IssuedCert:
    """A workload certificate and its key, as served over SDS (secret ``default``)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    # Istio's workload cert chain: the leaf only (there is no intermediate); the root is served
    # separately as the ``ROOTCA`` secret.
    chain_pem: bytes
    # Lowercase hex without leading zeros, as istioctl prints it.
    serial: str
    not_before: datetime
    not_after: datetime
    spiffe_id: str

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    def rotation_at(self, ratio: float = DEFAULT_ROTATION_RATIO) -> datetime:
        """When to replace this certificate: once only ``ratio`` of its lifetime is left.

        Istio measures from the certificate's own notBefore to notAfter (its grace period ratio),
        so the backdating for clock skew counts as lifetime too.
        """
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"rotation ratio must be within [0, 1], got {ratio}")
        return self.not_after - self.lifetime * ratio

    def needs_rotation(self, now: datetime, ratio: float = DEFAULT_ROTATION_RATIO) -> bool:
        _require_aware(now, "now")
        return now >= self.rotation_at(ratio)


class MeshCA:
    """The mesh root and the workload certificates it signs. Immutable once built, so one
    instance can be shared by every thread of the control plane."""

    def __init__(
        self,
        root_cert: x509.Certificate,
        root_key: ec.EllipticCurvePrivateKey,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> None:
        if not same_public_key(root_cert, root_key):
            raise ValueError("root key does not match the root certificate")
        self._root_cert = root_cert
        self._root_key = root_key
        self._trust_domain = trust_domain
        # Computed once: every workload certificate carries the same AKI and issuer.
        self._aki = authority_key_id(root_cert)
        self._root_pem = cert_to_pem(root_cert)
        # Workload certificates issued since start (citadel_server_success_cert_issuance_count).
        self.issued = 0

    @classmethod
    def load_or_create(cls, directory: Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> MeshCA:
        """Load the root from ``directory``, creating the directory and a new root if absent.

        The trust domain is not part of the root (Istio's roots do not pin it either), so the
        same root may serve a different trust domain after a restart.
        """
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by umask and ignored for an existing directory; the root key
        # must not be listable by others either way.
        _ensure_mode(directory, 0o700)
        cert_path = directory / ROOT_CERT_FILE
        key_path = directory / ROOT_KEY_FILE

        if key_path.exists():
            _ensure_mode(key_path, 0o600)
            key = _load_root_key(key_path)
            if cert_path.exists():
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                _check_root(cert, key, cert_path)
                return cls(cert, key, trust_domain)
            # The key is written before the certificate, so a crash in between leaves a key
            # alone. No one can trust a certificate that was never written: self-sign a new one
            # for the same key rather than refuse to start.
            cert = _self_sign(key)
            write_atomic(cert_path, cert_to_pem(cert), mode=0o644)
            return cls(cert, key, trust_domain)

        if cert_path.exists():
            # A root certificate without its key: proxies may already trust it, and a new root
            # would silently break them. Make the operator decide.
            raise FileNotFoundError(
                f"{cert_path} exists but {key_path} does not; restore the key or remove the certificate"
            )

        key = ec.generate_private_key(ec.SECP256R1())
        write_private(key_path, key_to_pem(key))
        cert = _self_sign(key)
        write_atomic(cert_path, cert_to_pem(cert), mode=0o644)
        return cls(cert, key, trust_domain)

    @property
    def root_pem(self) -> bytes:
        return self._root_pem

    @property
    def root_cert(self) -> x509.Certificate:
        return self._root_cert

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    def issue_workload(
        self,
        namespace: str,
        service_account: str,
        ttl: timedelta,
        now: datetime | None = None,
    ) -> IssuedCert:
        """A fresh key and certificate for ``spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT``."""
        self.issued += 1
        if ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        if now is None:
            now = utcnow()
        _require_aware(now, "now")
        uri = spiffe_id(namespace, service_account, self._trust_domain)
        # A '/' or an empty part would produce a URI that names another identity or none;
        # the parser is the arbiter of what a valid SPIFFE ID is.
        if parse_spiffe_id(uri) != SpiffeId(self._trust_domain, namespace, service_account):
            raise ValueError(f"invalid identity: namespace={namespace!r} service_account={service_account!r}")

        key = ec.generate_private_key(ec.SECP256R1())
        # Certificates carry whole seconds; truncating here makes the returned not_before and
        # not_after equal to what the certificate says.
        not_before = (now - CLOCK_SKEW).replace(microsecond=0)
        not_after = (now + ttl).replace(microsecond=0)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            # Empty subject, as Istio's: the identity is the SAN, which RFC 5280 then requires
            # to be critical.
            .subject_name(x509.Name([]))
            .issuer_name(self._root_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # Istio sets keyEncipherment on its EC workload certificates too; kept for
                    # fidelity (no TLS stack objects to it).
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(self._aki, critical=False)
            .sign(self._root_key, hashes.SHA256())
        )
        cert_pem = cert_to_pem(cert)
        return IssuedCert(
            cert_pem=cert_pem,
            key_pem=key_to_pem(key),
            chain_pem=cert_pem,
            serial=format(serial, "x"),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            spiffe_id=uri,
        )


def _ensure_mode(path: Path, mode: int) -> None:
    # chmod only when needed: a correctly set up directory on a read-only mount must still load.
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def _load_root_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: the mesh root key must be ECDSA P-256")
    return key


def _check_root(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_path: Path) -> None:
    if not same_public_key(cert, key):
        raise ValueError(f"{cert_path} does not match {cert_path.parent / ROOT_KEY_FILE}")
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    if not ca:
        raise ValueError(f"{cert_path} is not a CA certificate (basicConstraints CA:true missing)")


def _self_sign(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = utcnow()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ROOT_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, ROOT_COMMON_NAME),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
