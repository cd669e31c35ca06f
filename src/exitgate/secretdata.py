"""The data behind each SDS name a proxy needs: workload certificates from the mesh CA,
credential Secrets from the snapshot, and the files a DestinationRule names, read and checked
here (valid PEM, a key that matches its certificate) so that Envoy never reads a key from disk
and never gets content it would reject."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from exitgate import ir, names
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.ca.authority import MeshCA
from exitgate.ca.rotation import WorkloadCertManager
from exitgate.mesh import MeshConfig
from exitgate.translate.credentials import resolve_credential
from exitgate.translate.snapshot import Snapshot
from exitgate.translate.tls import SYSTEM_CA


# Codes of secret problems that block a push: the proxy keeps its last good configuration.
UNREADABLE = "EG0009"


def file_stamp(path: str) -> tuple[int, int] | None:
    """What tells that a file changed: (mtime in ns, size), or None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _read(path: str, what: str, pem: str) -> tuple[bytes | None, Diagnostic | None]:
    """A file's bytes, checked to be what it should be (``pem``: "certs", "key" or "crl"), so
    that Envoy is never sent something it would reject."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return None, Diagnostic(UNREADABLE, Severity.ERROR, f"cannot read {what} {path}: {e.strerror}")
    problem = pem_problem(data, pem)
    if problem:
        return None, Diagnostic(UNREADABLE, Severity.ERROR, f"{what} {path}: {problem}")
    return data, None


def pem_problem(data: bytes, pem: str) -> str | None:
    try:
        if pem == "certs":
            with warnings.catch_warnings():
                # System bundles hold a few old roots with serial 0, which cryptography warns
                # about on every load; BoringSSL accepts them, and so do we.
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                x509.load_pem_x509_certificates(data)
        elif pem == "key":
            serialization.load_pem_private_key(data, password=None)
        else:
            x509.load_pem_x509_crl(data)
    except (ValueError, TypeError) as e:
        return f"not a valid PEM {'certificate' if pem == 'certs' else 'private key' if pem == 'key' else 'CRL'} ({e})"
    return None


def key_mismatch(cert_pem: bytes, key_pem: bytes) -> str | None:
    """Why a certificate and key do not belong together (Envoy would reject the pair)."""
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        return f"cannot be loaded ({e})"
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        same = cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    except ValueError:
        same = False
    return None if same else "the private key does not match the certificate"


def _check_credential(data: ir.SecretData, proxy: str) -> Diagnostic | None:
    for blob, pem, what in ((data.cert_pem, "certs", "tls.crt"), (data.key_pem, "key", "tls.key"),
                            (data.ca_pem, "certs", "ca.crt"), (data.crl_pem, "crl", "ca.crl")):
        if blob is not None:
            problem = pem_problem(blob, pem)
            if problem:
                name, _ = names.parse_credential_secret(data.name)
                return Diagnostic(UNREADABLE, Severity.ERROR, f"{proxy}: Secret {name}, {what}: {problem}")
    if data.cert_pem is not None and data.key_pem is not None:
        problem = key_mismatch(data.cert_pem, data.key_pem)
        if problem:
            name, _ = names.parse_credential_secret(data.name)
            return Diagnostic(UNREADABLE, Severity.ERROR, f"{proxy}: Secret {name}: {problem}")
    return None


def secret_files(wanted: Sequence[str], mesh: MeshConfig) -> list[str]:
    """The files behind the file-based SDS names among ``wanted``."""
    out: list[str] = []
    for name in wanted:
        if name.startswith((names.FILE_CERT_PREFIX, names.FILE_ROOT_PREFIX)):
            _, first, second = names.parse_file_secret(name)
            out += [mesh.system_trust_store if first == SYSTEM_CA else first] + ([second] if second else [])
    return out


def resolve_secrets(wanted: Sequence[str], who: str, identity: tuple[str, str], namespace: str, snap: Snapshot,
                    certs: WorkloadCertManager, ca: MeshCA, mesh: MeshConfig) -> tuple[dict[str, ir.SecretData], list[Diagnostic]]:
    """The data behind each SDS name one proxy needs. Files are read here, by the control
    plane; Envoy never reads a key from disk. A secret that cannot be had is left out and
    reported: a missing credential Secret fails closed; a file or Secret whose content is not
    valid PEM (code ``EG0009``) makes the caller keep the proxy's last good configuration."""
    out: dict[str, ir.SecretData] = {}
    diags: list[Diagnostic] = []
    for name in wanted:
        if name == names.WORKLOAD_CERT_SECRET:
            cert = certs.get(*identity)
            out[name] = ir.SecretData(name, cert_pem=cert.chain_pem, key_pem=cert.key_pem)
        elif name == names.ROOT_CA_SECRET:
            out[name] = ir.SecretData(name, ca_pem=ca.root_pem)
        elif name.startswith(names.CREDENTIAL_PREFIX):
            data, diag = resolve_credential(snap, namespace, name, who)
            if data is not None:
                diag = _check_credential(data, who)
                if diag is None:
                    out[name] = data
            if diag is not None:
                diags.append(diag)
        else:
            kind, first, second = names.parse_file_secret(name)
            if kind == "cert":
                cert_pem, d1 = _read(first, "client certificate", "certs")
                key_pem, d2 = _read(second or "", "private key", "key")
                diags += [d for d in (d1, d2) if d]
                mismatch = key_mismatch(cert_pem, key_pem) if cert_pem and key_pem else None
                if mismatch:
                    diags.append(Diagnostic(UNREADABLE, Severity.ERROR, f"client certificate {first} and private key {second}: {mismatch}"))
                elif cert_pem and key_pem:
                    out[name] = ir.SecretData(name, cert_pem=cert_pem, key_pem=key_pem)
            else:
                ca_pem, d1 = _read(mesh.system_trust_store if first == SYSTEM_CA else first, "CA certificates", "certs")
                crl_pem, d2 = _read(second, "CRL", "crl") if second else (None, None)
                diags += [d for d in (d1, d2) if d]
                if ca_pem and (crl_pem or not second):
                    out[name] = ir.SecretData(name, ca_pem=ca_pem, crl_pem=crl_pem)
    return out, diags
