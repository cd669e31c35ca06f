"""Plain X.509 helpers: "external world" PKI for the demo and tests, certificate summaries, 0600 files.

Istio's egress documentation builds its external servers' and clients' certificates with a handful
of ``openssl req``/``openssl x509`` commands. These functions are their equivalent in
``cryptography``, so the demo and the tests need no openssl binary: ``make_root`` plays
``openssl req -x509``, ``make_leaf`` plays ``openssl x509 -req -CA``, ``make_crl`` plays
``openssl ca -gencrl``. ``cert_info`` summarises a certificate for ``proxy-config secret`` style
output, and ``write_private`` is the one way exitgate writes key material to disk.

Everything is PEM in, PEM out (``bytes``): that is what ends up in Secrets, files and SDS.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["rsa2048", "ec256"]

# Backdate certificates a little: a peer whose clock is slightly behind ours must not see a
# certificate that is "not yet valid" (Istio backdates workload certificates the same way).
CLOCK_SKEW = timedelta(minutes=1)

# The key types this module signs with. Ed25519/Ed448 would need a ``None`` hash and are not
# accepted by every TLS stack as certificate signers, so they are left out on purpose.
IssuerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def generate_key(key_type: KeyType) -> IssuerKey:
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {key_type!r} (expected 'rsa2048' or 'ec256')")


def key_to_pem(key: IssuerKey) -> bytes:
    # PKCS#8, unencrypted: the format both Envoy (BoringSSL) and Kubernetes TLS Secrets accept
    # for RSA and EC keys alike.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_issuer_key(key_pem: bytes) -> IssuerKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise TypeError(f"unsupported signing key type {type(key).__name__} (expected RSA or ECDSA)")
    return key


def same_public_key(cert: x509.Certificate, key: CertificateIssuerPrivateKeyTypes) -> bool:
    """True when ``key`` is the private half of ``cert``'s public key."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI for certificates signed by ``issuer``: its SKI when it has one (what verifiers
    match on when building chains), else one derived from its public key."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        pub = issuer.public_key()
        # Same key types as IssuerKey: X25519/X448 keys cannot sign anything.
        if not isinstance(pub, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise TypeError(f"unsupported issuer key type {type(pub).__name__}") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(pub)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _name(common_name: str, org: str | None) -> x509.Name:
    # O before CN, the order of Istio's doc commands (``-subj '/O=example Inc./CN=example.com'``).
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def make_root(
    common_name: str,
    org: str,
    key_type: KeyType = "rsa2048",
    days: int = 3650,
) -> tuple[bytes, bytes]:
    """A self-signed CA certificate and its key: ``(cert_pem, key_pem)``."""
    key = generate_key(key_type)
    now = utcnow()
    subject = _name(common_name, org)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert_to_pem(cert), key_to_pem(key)


def ca_key_usage() -> x509.KeyUsage:
    """A root's key usage. cRLSign as well as keyCertSign: a root may sign CRLs (make_crl), and
    OpenSSL and BoringSSL refuse a CRL whose issuer lacks cRLSign."""
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def make_leaf(
    root_cert_pem: bytes,
    root_key_pem: bytes,
    common_name: str,
    dns_names: list[str],
    org: str | None = None,
    client: bool = False,
    serial: int | None = None,
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key_type: KeyType = "rsa2048",
) -> tuple[bytes, bytes]:
    """An end-entity certificate signed by the given root: ``(cert_pem, key_pem)``.

    A server leaf (``client=False``) carries extendedKeyUsage serverAuth, a client leaf clientAuth.
    ``dns_names`` become DNS subject-alt-names (none when empty: some of Istio's doc certificates
    rely on the CN alone). ``not_before``/``not_after`` override the validity window, e.g. to make
    an expired or not-yet-valid certificate; ``days`` counts from the effective ``not_before``.
    """
    root_cert = x509.load_pem_x509_certificate(root_cert_pem)
    root_key = load_issuer_key(root_key_pem)
    if not same_public_key(root_cert, root_key):
        raise ValueError("root key does not match the root certificate")
    key = generate_key(key_type)
    start = not_before if not_before is not None else utcnow() - CLOCK_SKEW
    end = not_after if not_after is not None else start + timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, org))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        # cryptography refuses serial 0, which Istio's docs use (``-set_serial 0``): random by
        # default, and a caller that needs a known serial (for a CRL) passes a positive one.
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(authority_key_id(root_cert), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    cert = builder.sign(root_key, hashes.SHA256())
    return cert_to_pem(cert), key_to_pem(key)


def _leaf_key_usage(rsa_key: bool) -> x509.KeyUsage:
    # keyEncipherment only means something for RSA key exchange; on an EC certificate it is
    # meaningless, so it is set for RSA keys only.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_crl(
    root_cert_pem: bytes,
    root_key_pem: bytes,
    revoked_serials: list[int],
    days: int = 30,
    crl_number: int = 1,
) -> bytes:
    """A CRL signed by the root, revoking ``revoked_serials`` as of now. PEM.

    The CRL has a nextUpdate ``days`` from now: OpenSSL and BoringSSL reject a CRL past its
    nextUpdate when CRL checking is on, so it must not be left in the past.
    """
    root_cert = x509.load_pem_x509_certificate(root_cert_pem)
    root_key = load_issuer_key(root_key_pem)
    if not same_public_key(root_cert, root_key):
        raise ValueError("root key does not match the root certificate")
    now = utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root_cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + timedelta(days=days))
        # RFC 5280 requires both on a conforming CRL; AKI also lets verifiers pick the issuer.
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(authority_key_id(root_cert), critical=False)
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - CLOCK_SKEW).build()
        )
    crl = builder.sign(root_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertInfo:
    """What ``proxy-config secret`` shows of a certificate."""

    # Lowercase hex without leading zeros, the format istioctl prints serials in.
    serial: str
    not_before: datetime
    not_after: datetime
    subject: str
    issuer: str
    # openssl-style ``DNS:host``, ``URI:spiffe://...``, ``IP:10.0.0.1``, ``email:...``.
    sans: tuple[str, ...]
    is_ca: bool

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after


def cert_info(pem: bytes) -> CertInfo:
    """Summary of the first certificate in ``pem`` (a chain's leaf)."""
    cert = x509.load_pem_x509_certificate(pem)
    return CertInfo(
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=_sans(cert),
        is_ca=_is_ca(cert),
    )


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out: list[str] = []
    for gn in san:
        if isinstance(gn, x509.DNSName):
            out.append(f"DNS:{gn.value}")
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append(f"URI:{gn.value}")
        elif isinstance(gn, x509.IPAddress):
            out.append(f"IP:{gn.value}")
        elif isinstance(gn, x509.RFC822Name):
            out.append(f"email:{gn.value}")
        else:
            out.append(f"{type(gn).__name__}:{gn.value!r}")
    return tuple(out)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def write_private(path: Path, data: bytes) -> None:
    """Write key material readable by its owner only (0600), atomically."""
    write_atomic(path, data, mode=0o600)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new, never a part.

    The temporary file is created 0600 from the start (``os.open`` with O_EXCL), so a private
    key is never readable by others, not even for an instant; ``fsync`` before ``rename``
    so a crash cannot leave a renamed but empty file; ``fsync`` of the directory so the rename
    itself survives a crash.
    """
    path = Path(path)
    directory = path.parent
    # O_EXCL on a random name: never follow or reuse a file someone else put there. The file is
    # created 0600 and only then widened to ``mode`` if asked (umask does not apply to fchmod,
    # so a certificate's 0644 stays 0644).
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
