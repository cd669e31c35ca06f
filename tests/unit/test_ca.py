"""Tests of the mesh CA, workload certificate rotation and the "external world" PKI helpers."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exitgate.ca.authority import ROOT_CERT_FILE, ROOT_KEY_FILE, IssuedCert, MeshCA
from exitgate.ca.certs import cert_info, make_crl, make_leaf, make_root, write_private
from exitgate.ca.rotation import Identity, WorkloadCertManager

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


@pytest.fixture
def ca(tmp_path: Path) -> MeshCA:
    return MeshCA.load_or_create(tmp_path / "ca")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- mesh root -------------------------------------------------------------------------------


def test_root_is_a_self_signed_p256_ca(ca: MeshCA) -> None:
    root = load(ca.root_pem)
    root.verify_directly_issued_by(root)
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(root.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "exitgate"
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "exitgate mesh root"
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert timedelta(days=3649) < lifetime < timedelta(days=3651)


def test_key_file_0600_and_directory_0700(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "ca"
    MeshCA.load_or_create(directory)
    assert mode(directory) == 0o700
    assert mode(directory / ROOT_KEY_FILE) == 0o600
    assert (directory / ROOT_CERT_FILE).exists()
    # No temporary files left behind by the atomic writes.
    assert sorted(p.name for p in directory.iterdir()) == [ROOT_CERT_FILE, ROOT_KEY_FILE]


def test_existing_directory_and_key_are_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    MeshCA.load_or_create(directory)
    os.chmod(directory, 0o755)
    os.chmod(directory / ROOT_KEY_FILE, 0o644)
    MeshCA.load_or_create(directory)
    assert mode(directory) == 0o700
    assert mode(directory / ROOT_KEY_FILE) == 0o600


def test_load_or_create_is_idempotent(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    first = MeshCA.load_or_create(directory)
    key_before = (directory / ROOT_KEY_FILE).read_bytes()
    second = MeshCA.load_or_create(directory)
    assert second.root_pem == first.root_pem
    assert (directory / ROOT_KEY_FILE).read_bytes() == key_before
    # A certificate issued after the reload verifies against the root of the first instance.
    issued = second.issue_workload("default", "sleep", timedelta(hours=1))
    load(issued.cert_pem).verify_directly_issued_by(load(first.root_pem))


def test_key_without_cert_gets_a_new_cert_for_the_same_key(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    first = MeshCA.load_or_create(directory)
    (directory / ROOT_CERT_FILE).unlink()
    second = MeshCA.load_or_create(directory)
    assert load(second.root_pem).public_key() == load(first.root_pem).public_key()


def test_cert_without_key_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    MeshCA.load_or_create(directory)
    (directory / ROOT_KEY_FILE).unlink()
    with pytest.raises(FileNotFoundError):
        MeshCA.load_or_create(directory)


def test_mismatched_key_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    MeshCA.load_or_create(a)
    MeshCA.load_or_create(b)
    shutil.copy(b / ROOT_KEY_FILE, a / ROOT_KEY_FILE)
    with pytest.raises(ValueError, match="does not match"):
        MeshCA.load_or_create(a)


# --- workload certificates -------------------------------------------------------------------


def test_workload_cert_shape(ca: MeshCA) -> None:
    issued = ca.issue_workload("default", "sleep", timedelta(hours=24), now=T0)
    cert = load(issued.cert_pem)
    root = load(ca.root_pem)

    cert.verify_directly_issued_by(root)
    assert len(cert.subject) == 0
    assert cert.issuer == root.subject

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/sleep"
    ]
    assert san.value.get_values_for_type(x509.DNSName) == []
    assert issued.spiffe_id == "spiffe://cluster.local/ns/default/sa/sleep"

    pub = cert.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1)
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == pub

    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest

    assert cert.not_valid_before_utc == T0 - timedelta(minutes=1) == issued.not_before
    assert cert.not_valid_after_utc == T0 + timedelta(hours=24) == issued.not_after
    assert issued.serial == format(cert.serial_number, "x")
    # Istio's chain is the leaf alone; the root is the separate ROOTCA secret.
    assert issued.chain_pem == issued.cert_pem
    assert b"PRIVATE KEY" not in repr(issued).encode()


def test_workload_certs_have_distinct_serials_and_keys(ca: MeshCA) -> None:
    a = ca.issue_workload("default", "sleep", timedelta(hours=1), now=T0)
    b = ca.issue_workload("default", "sleep", timedelta(hours=1), now=T0)
    assert a.serial != b.serial
    assert a.key_pem != b.key_pem


def test_trust_domain(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca", trust_domain="example.org")
    issued = ca.issue_workload("istio-system", "egress", timedelta(hours=1))
    assert issued.spiffe_id == "spiffe://example.org/ns/istio-system/sa/egress"


@pytest.mark.parametrize("ns,sa", [("a/b", "sa"), ("ns", ""), ("", "sa"), ("ns", "x/sa/y")])
def test_invalid_identity_is_refused(ca: MeshCA, ns: str, sa: str) -> None:
    with pytest.raises(ValueError):
        ca.issue_workload(ns, sa, timedelta(hours=1))


def test_bad_ttl_and_naive_now_are_refused(ca: MeshCA) -> None:
    with pytest.raises(ValueError):
        ca.issue_workload("default", "sleep", timedelta(0))
    with pytest.raises(ValueError):
        ca.issue_workload("default", "sleep", timedelta(hours=1), now=datetime(2030, 1, 1))


def test_needs_rotation_at_half_life(ca: MeshCA) -> None:
    issued = ca.issue_workload("default", "sleep", timedelta(hours=24), now=T0)
    # The lifetime runs from the backdated notBefore: 24h01m, half of it 12h00m30s.
    half = issued.not_before + (issued.not_after - issued.not_before) / 2
    assert not issued.needs_rotation(T0)
    assert not issued.needs_rotation(half - timedelta(seconds=1))
    assert issued.needs_rotation(half)
    assert issued.needs_rotation(issued.not_after + timedelta(hours=1))
    assert not issued.needs_rotation(T0 + timedelta(hours=20), ratio=0.1)
    assert issued.needs_rotation(T0 + timedelta(hours=22), ratio=0.1)


# --- rotation manager ------------------------------------------------------------------------


def test_manager_caches_until_half_life_then_reissues(ca: MeshCA) -> None:
    clock = FakeClock(T0)
    manager = WorkloadCertManager(ca, timedelta(hours=24), clock)

    first = manager.get("default", "sleep")
    assert first.not_after == T0 + timedelta(hours=24)
    assert manager.next_rotation() == first.rotation_at()

    clock.now = T0 + timedelta(hours=11)
    assert manager.get("default", "sleep") is first
    assert manager.due() == []

    clock.now = T0 + timedelta(hours=13)
    assert manager.due() == [Identity("default", "sleep")]
    assert manager.due(T0) == []
    second = manager.get("default", "sleep")
    assert second is not first and second.serial != first.serial
    assert second.not_before == T0 + timedelta(hours=13) - timedelta(minutes=1)
    assert manager.due() == []
    assert manager.get("default", "sleep") is second


def test_manager_keeps_identities_apart(ca: MeshCA) -> None:
    clock = FakeClock(T0)
    manager = WorkloadCertManager(ca, timedelta(hours=2), clock)
    sleep = manager.get("default", "sleep")
    clock.now = T0 + timedelta(minutes=90)
    egress = manager.get("istio-system", "egress")
    assert sleep.spiffe_id != egress.spiffe_id
    assert manager.identities() == [Identity("default", "sleep"), Identity("istio-system", "egress")]
    # Only the older one is past half-life.
    assert manager.due() == [Identity("default", "sleep")]
    manager.forget("default", "sleep")
    assert manager.due() == []
    assert manager.identities() == [Identity("istio-system", "egress")]


def test_manager_with_nothing_cached(ca: MeshCA) -> None:
    manager = WorkloadCertManager(ca, timedelta(hours=1), FakeClock(T0))
    assert manager.due() == []
    assert manager.next_rotation() is None


# --- external-world PKI helpers --------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["rsa2048", "ec256"])
def test_make_leaf_server_and_client(key_type: str) -> None:
    root_pem, root_key_pem = make_root("example.com", "example Inc.", key_type=key_type)  # type: ignore[arg-type]
    root = load(root_pem)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root.verify_directly_issued_by(root)

    server_pem, server_key_pem = make_leaf(
        root_pem, root_key_pem, "my-nginx.mesh-external.svc.cluster.local",
        ["my-nginx.mesh-external.svc.cluster.local"], org="some organization", key_type=key_type,  # type: ignore[arg-type]
    )
    server = load(server_pem)
    server.verify_directly_issued_by(root)
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["my-nginx.mesh-external.svc.cluster.local"]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(server_key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey if key_type == "rsa2048" else ec.EllipticCurvePrivateKey)
    assert key.public_key() == server.public_key()

    client_pem, _ = make_leaf(root_pem, root_key_pem, "client.example.com", [], client=True)
    client = load(client_pem)
    client.verify_directly_issued_by(root)
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        client.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_make_leaf_validity_overrides() -> None:
    root_pem, root_key_pem = make_root("example.com", "example Inc.")
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    end = datetime(2020, 2, 1, tzinfo=timezone.utc)
    pem, _ = make_leaf(root_pem, root_key_pem, "expired.example.com", ["expired.example.com"],
                       serial=42, not_before=start, not_after=end)
    info = cert_info(pem)
    assert (info.not_before, info.not_after) == (start, end)
    assert info.serial == "2a"
    assert not info.valid_at(datetime.now(timezone.utc))
    pem, _ = make_leaf(root_pem, root_key_pem, "x", [], not_before=start, days=10)
    assert cert_info(pem).not_after == start + timedelta(days=10)


def test_make_leaf_refuses_a_key_from_another_root() -> None:
    root_pem, _ = make_root("a", "a")
    _, other_key_pem = make_root("b", "b")
    with pytest.raises(ValueError):
        make_leaf(root_pem, other_key_pem, "x", ["x"])


def test_make_crl_round_trip() -> None:
    root_pem, root_key_pem = make_root("example.com", "example Inc.")
    leaf_pem, _ = make_leaf(root_pem, root_key_pem, "a.example.com", ["a.example.com"], serial=1234)
    crl = x509.load_pem_x509_crl(make_crl(root_pem, root_key_pem, [1234, 99]))
    root = load(root_pem)
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    assert crl.issuer == root.subject
    revoked = crl.get_revoked_certificate_by_serial_number(load(leaf_pem).serial_number)
    assert revoked is not None
    assert crl.get_revoked_certificate_by_serial_number(99) is not None
    assert crl.get_revoked_certificate_by_serial_number(5) is None
    assert crl.next_update_utc is not None and crl.next_update_utc > datetime.now(timezone.utc)
    # Signed by another root: the signature does not verify.
    other_pem, _ = make_root("other", "other")
    assert not crl.is_signature_valid(load(other_pem).public_key())  # type: ignore[arg-type]


def test_cert_info(ca: MeshCA) -> None:
    issued = ca.issue_workload("default", "sleep", timedelta(hours=1), now=T0)
    info = cert_info(issued.cert_pem)
    assert info.serial == issued.serial
    assert (info.not_before, info.not_after) == (issued.not_before, issued.not_after)
    assert info.subject == ""
    assert info.issuer == "CN=exitgate mesh root,O=exitgate"
    assert info.sans == ("URI:spiffe://cluster.local/ns/default/sa/sleep",)
    assert not info.is_ca
    assert info.valid_at(T0) and not info.valid_at(T0 + timedelta(hours=2))

    root = cert_info(ca.root_pem)
    assert root.is_ca and root.sans == () and root.subject == root.issuer

    root_pem, root_key_pem = make_root("example.com", "example Inc.")
    leaf, _ = make_leaf(root_pem, root_key_pem, "a.example.com", ["a.example.com", "b.example.com"], org="Org")
    info = cert_info(leaf)
    assert info.subject == "CN=a.example.com,O=Org"
    assert info.sans == ("DNS:a.example.com", "DNS:b.example.com")


def test_write_private(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_private(path, b"secret")
    assert path.read_bytes() == b"secret"
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_issued_cert_is_frozen(ca: MeshCA) -> None:
    issued = ca.issue_workload("default", "sleep", timedelta(hours=1))
    assert isinstance(issued, IssuedCert)
    with pytest.raises(AttributeError):
        issued.serial = "0"  # type: ignore[misc]


# --- interoperability with openssl -----------------------------------------------------------

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")


def openssl_verify(tmp_path: Path, root_pem: bytes, leaf_pem: bytes, *extra: str,
                   crl_pem: bytes | None = None) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    (tmp_path / "root.pem").write_bytes(root_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    args = [OPENSSL, "verify", "-CAfile", str(tmp_path / "root.pem"), *extra]
    if crl_pem is not None:
        (tmp_path / "crl.pem").write_bytes(crl_pem)
        args += ["-crl_check", "-CRLfile", str(tmp_path / "crl.pem")]
    return subprocess.run([*args, str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)


@needs_openssl
@pytest.mark.parametrize("key_type", ["rsa2048", "ec256"])
def test_openssl_accepts_demo_server_leaf(tmp_path: Path, key_type: str) -> None:
    root_pem, root_key_pem = make_root("example.com", "example Inc.", key_type=key_type)  # type: ignore[arg-type]
    leaf_pem, _ = make_leaf(root_pem, root_key_pem, "my-nginx.mesh-external.svc.cluster.local",
                            ["my-nginx.mesh-external.svc.cluster.local"], key_type=key_type)  # type: ignore[arg-type]
    result = openssl_verify(tmp_path, root_pem, leaf_pem, "-purpose", "sslserver")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@needs_openssl
def test_openssl_accepts_client_leaf_and_rejects_it_as_server(tmp_path: Path) -> None:
    root_pem, root_key_pem = make_root("example.com", "example Inc.")
    leaf_pem, _ = make_leaf(root_pem, root_key_pem, "client.example.com", [], client=True)
    assert openssl_verify(tmp_path, root_pem, leaf_pem, "-purpose", "sslclient").returncode == 0
    assert openssl_verify(tmp_path, root_pem, leaf_pem, "-purpose", "sslserver").returncode != 0


@needs_openssl
def test_openssl_honours_crl(tmp_path: Path) -> None:
    root_pem, root_key_pem = make_root("example.com", "example Inc.")
    leaf_pem, _ = make_leaf(root_pem, root_key_pem, "a.example.com", ["a.example.com"], serial=7)
    clean = openssl_verify(tmp_path, root_pem, leaf_pem, crl_pem=make_crl(root_pem, root_key_pem, []))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    revoked = openssl_verify(tmp_path, root_pem, leaf_pem, crl_pem=make_crl(root_pem, root_key_pem, [7]))
    assert revoked.returncode != 0
    assert "revoked" in (revoked.stdout + revoked.stderr)


@needs_openssl
def test_openssl_accepts_workload_cert_both_ways(tmp_path: Path, ca: MeshCA) -> None:
    issued = ca.issue_workload("default", "sleep", timedelta(hours=1))
    for purpose in ("sslserver", "sslclient"):
        result = openssl_verify(tmp_path, ca.root_pem, issued.chain_pem, "-purpose", purpose)
        assert result.returncode == 0, result.stdout + result.stderr
