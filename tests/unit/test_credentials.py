"""credentialName resolution: Istio's Secret formats, the -cacert convention, CRLs, and the
namespace rule (a Secret elsewhere is not found, and the user is told where it is)."""

from __future__ import annotations

import pytest

from exitgate.api.loader import load_text
from exitgate.mesh import MeshConfig
from exitgate.translate.credentials import resolve_credential
from exitgate.translate.snapshot import Snapshot


def secrets(text: str) -> Snapshot:
    loaded = load_text(text, "secrets.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return Snapshot(loaded.resources, MeshConfig())


GENERIC = """
apiVersion: v1
kind: Secret
metadata: {name: client-credential, namespace: istio-system}
stringData: {tls.crt: CERT, tls.key: KEY, ca.crt: CA, ca.crl: CRL}
"""
SHORT_KEYS = """
apiVersion: v1
kind: Secret
metadata: {name: client-credential, namespace: istio-system}
stringData: {cert: CERT2, key: KEY2, cacert: CA2, crl: CRL2}
"""
TLS_PLUS_CACERT = """
apiVersion: v1
kind: Secret
metadata: {name: client-credential, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: Q0VSVA==, tls.key: S0VZ, ca.crt: SUdOT1JFRA==}
---
apiVersion: v1
kind: Secret
metadata: {name: client-credential-cacert, namespace: istio-system}
stringData: {ca.crt: SEPARATE-CA}
"""


@pytest.mark.parametrize("text,cert,key,ca,crl", [
    (GENERIC, b"CERT", b"KEY", b"CA", b"CRL"),
    (SHORT_KEYS, b"CERT2", b"KEY2", b"CA2", b"CRL2"),
    (TLS_PLUS_CACERT, b"CERT", b"KEY", b"SEPARATE-CA", None),
])
def test_secret_formats(text: str, cert: bytes, key: bytes, ca: bytes, crl: bytes | None) -> None:
    res = secrets(text)
    data, diag = resolve_credential(res, "istio-system", "kubernetes://client-credential", "gw")
    assert diag is None and data is not None
    assert (data.cert_pem, data.key_pem) == (cert, key)
    data, diag = resolve_credential(res, "istio-system", "kubernetes://client-credential-cacert", "gw")
    assert diag is None and data is not None
    assert (data.ca_pem, data.crl_pem) == (ca, crl)


def test_a_secret_in_another_namespace_is_not_used_and_the_user_is_told() -> None:
    res = secrets(GENERIC)
    data, diag = resolve_credential(res, "other-gateway-ns", "kubernetes://client-credential", "gw")
    assert data is None and diag is not None and diag.is_error
    assert diag.code == "IST0101"
    assert "other-gateway-ns/client-credential" in diag.message and "exists in namespace istio-system" in diag.message


def test_a_secret_without_client_certificate() -> None:
    res = secrets("""
apiVersion: v1
kind: Secret
metadata: {name: client-credential, namespace: istio-system}
stringData: {ca.crt: CA}
""")
    data, diag = resolve_credential(res, "istio-system", "kubernetes://client-credential", "gw")
    assert data is None and diag is not None and "no client certificate" in diag.message
    data, diag = resolve_credential(res, "istio-system", "kubernetes://client-credential-cacert", "gw")
    assert diag is None and data is not None and data.ca_pem == b"CA"


def test_secret_repr_never_shows_data() -> None:
    (res,) = secrets(GENERIC).resources
    assert "KEY" not in repr(res) and "KEY" not in repr(res.spec) and "KEY" not in str(res.spec)


def test_tls_secret_needs_certificate_and_key() -> None:
    loaded = load_text("""apiVersion: v1
kind: Secret
metadata: {name: x, namespace: istio-system}
type: kubernetes.io/tls
stringData:
  tls.crt: CERT
""", "s.yaml")
    assert not loaded.ok
    assert any("tls.key" in d.message for d in loaded.diagnostics)
