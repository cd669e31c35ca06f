"""Stand-ins for the external world, exercised with real clients (dnslib, curl) on 127.0.0.1."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dnslib import QTYPE, RCODE, DNSRecord

from exitgate.demo.standins import DnsStandIn, NginxServer, RedirectServer, TlsPageServer, find_nginx
from exitgate.envoy.ports import free_port

HOST = "edition.cnn.com"
CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl not installed")


# ---- a tiny CA, independent of exitgate.ca


@dataclass(frozen=True)
class Issued:
    cert_pem: str
    key_pem: str


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_ca(name: str) -> tuple[Issued, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)), key, cert


def make_leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, dns: list[str], client: bool = False
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key))


@dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    client: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca, ca_key, ca_cert = make_ca("stand-in test CA")
    return Pki(
        ca=ca,
        server=make_leaf(ca_key, ca_cert, HOST, [HOST]),
        client=make_leaf(ca_key, ca_cert, "sleep.default", [], client=True),
    )


def curl(*args: str, noproxy: bool = True) -> subprocess.CompletedProcess[str]:
    """curl, ignoring any proxy the environment names (unless the test gives one with -x)."""
    assert CURL is not None
    no_proxy = ["--noproxy", "*"] if noproxy else []
    return subprocess.run(
        [CURL, "-sS", *no_proxy, "--max-time", "10", *args], capture_output=True, text=True, timeout=30
    )


def assert_port_free(port: int, udp: bool = False) -> None:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        # SO_REUSEADDR as any server sets it: connections the stand-in closed first linger in
        # TIME_WAIT on its port, which is normal and does not stop a new listener.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # raises if something still holds it
        if not udp:
            s.listen()


# ---- DNS


@pytest.fixture
def dns() -> Iterator[DnsStandIn]:
    server = DnsStandIn({"Edition.CNN.com.": "127.0.0.1", "v6.example": "::1"}).start()
    try:
        yield server
    finally:
        server.stop()


def ask(server: DnsStandIn, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    reply = DNSRecord.question(name, qtype).send(server.host, server.port, tcp=tcp, timeout=3)
    return DNSRecord.parse(reply)


def test_dns_answers_known_names(dns: DnsStandIn) -> None:
    assert dns.port > 0
    for name in ("edition.cnn.com", "EDITION.cnn.COM.", "edition.cnn.com."):
        reply = ask(dns, name)
        assert reply.header.rcode == RCODE.NOERROR
        assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [("A", "127.0.0.1")]
    assert [str(rr.rdata) for rr in ask(dns, "edition.cnn.com", tcp=True).rr] == ["127.0.0.1"]
    assert [str(rr.rdata) for rr in ask(dns, "v6.example", "AAAA").rr] == ["::1"]


def test_dns_nodata_and_nxdomain(dns: DnsStandIn) -> None:
    nodata = ask(dns, "edition.cnn.com", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr  # the name exists
    unknown = ask(dns, "www.example.com")
    assert unknown.header.rcode == RCODE.NXDOMAIN and not unknown.rr
    assert ("www.example.com", "A") in dns.queries
    assert ("edition.cnn.com", "AAAA") in dns.queries


def test_dns_stop_releases_both_ports() -> None:
    server = DnsStandIn({HOST: "127.0.0.1"}).start()
    port = server.port
    server.stop()
    server.stop()  # idempotent
    assert_port_free(port, udp=True)
    assert_port_free(port)


# ---- HTTP redirect


@needs_curl
def test_redirect_to_https_like_edition_cnn_com() -> None:
    server = RedirectServer("127.0.0.1").start()
    try:
        result = curl("-i", "-H", f"Host: {HOST}:80", f"http://127.0.0.1:{server.port}/politics?x=1")
        assert result.returncode == 0, result.stderr
        head = result.stdout.lower()
        assert head.startswith("http/1.1 301 moved permanently")
        assert f"location: https://{HOST}/politics?x=1\n" in head
        # Forward-proxy form (absolute URL), as a sidecar's upstream might send it.
        proxied = curl("-i", "-x", f"http://127.0.0.1:{server.port}", f"http://{HOST}/world", noproxy=False)
        assert f"location: https://{HOST}/world\n" in proxied.stdout.lower()
        assert [(r.method, r.path) for r in server.requests] == [("GET", "/politics?x=1"), ("GET", "/world")]
    finally:
        server.stop()
    assert_port_free(server.port)


# ---- HTTPS page


@needs_curl
def test_tls_page_over_curl(tmp_path: Path, pki: Pki) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pki.ca.cert_pem)
    server = TlsPageServer(host="127.0.0.1", cert_pem=pki.server.cert_pem, key_pem=pki.server.key_pem,
                           body="<html>hello</html>").start()
    try:
        url = f"https://{HOST}:{server.port}/"
        resolve = f"{HOST}:{server.port}:127.0.0.1"
        for tls in (["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]):
            result = curl("--cacert", str(ca_file), "--resolve", resolve, *tls,
                          "-w", "\n%{http_code} %{http_version}", url)
            assert result.returncode == 0, result.stderr
            assert result.stdout == "<html>hello</html>\n200 1.1"
        # The server's certificate really is checked: an unrelated CA fails.
        other, _, _ = make_ca("other CA")
        other_file = tmp_path / "other.pem"
        other_file.write_text(other.cert_pem)
        assert curl("--cacert", str(other_file), "--resolve", resolve, url).returncode == 60
    finally:
        server.stop()
    assert_port_free(server.port)


@needs_curl
def test_tls_page_requires_client_cert(tmp_path: Path, pki: Pki) -> None:
    for name, pem in [("ca.pem", pki.ca.cert_pem), ("client.pem", pki.client.cert_pem), ("client.key", pki.client.key_pem)]:
        (tmp_path / name).write_text(pem)
    server = TlsPageServer(cert_pem=pki.server.cert_pem, key_pem=pki.server.key_pem,
                           client_ca_pem=pki.ca.cert_pem).start()
    try:
        url = f"https://{HOST}:{server.port}/"
        base = ["--cacert", str(tmp_path / "ca.pem"), "--resolve", f"{HOST}:{server.port}:127.0.0.1"]
        refused = curl(*base, url)
        assert refused.returncode != 0
        ok = curl(*base, "--cert", str(tmp_path / "client.pem"), "--key", str(tmp_path / "client.key"), "-i", url)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.lower().startswith("http/1.1 200")
        assert "x-client-subject: commonName=sleep.default" in ok.stdout
        assert server.requests[-1].client_cert_subject == "commonName=sleep.default"
    finally:
        server.stop()
    assert_port_free(server.port)


def test_stop_closes_keepalive_connections(pki: Pki) -> None:
    server = TlsPageServer(cert_pem=pki.server.cert_pem, key_pem=pki.server.key_pem).start()
    idle = socket.create_connection(("127.0.0.1", server.port))  # never sends a byte
    try:
        server.stop()  # must not hang on the idle connection
    finally:
        idle.close()
    assert_port_free(server.port)


# ---- nginx

NGINX_CONF = """\
worker_processes 1;
http {
    server {
        listen 127.0.0.1:%(port)d ssl;
        server_name %(host)s;
        ssl_certificate server.pem;
        ssl_certificate_key server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            default_type text/html;
            return 200 "<html>nginx stand-in</html>";
        }
    }
}
"""


@needs_curl
@pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")
def test_nginx_serves_tls(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "ca.pem").write_text(pki.ca.cert_pem)
    port = free_port()
    nginx = NginxServer(
        tmp_path / "nginx",
        NGINX_CONF % {"port": port, "host": HOST},
        port=port,
        files={"server.pem": pki.server.cert_pem, "server.key": pki.server.key_pem},
    )
    pid = None
    try:
        nginx.start()
        pid = nginx.pid
        assert oct((tmp_path / "nginx" / "server.key").stat().st_mode & 0o777) == "0o600"
        result = curl("--cacert", str(tmp_path / "ca.pem"), "--resolve", f"{HOST}:{port}:127.0.0.1",
                      f"https://{HOST}:{port}/")
        assert result.returncode == 0, result.stderr + nginx.error_log.read_text()
        assert result.stdout == "<html>nginx stand-in</html>"
    finally:
        nginx.stop()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # neither the master nor a worker is left
    assert_port_free(port)


@pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")
def test_nginx_bad_conf_reports_error(tmp_path: Path) -> None:
    port = free_port()
    nginx = NginxServer(tmp_path / "nginx", "http { no_such_directive on; }\n", port=port, start_timeout=5)
    with pytest.raises(RuntimeError, match="no_such_directive"):
        nginx.start()
    assert not nginx.running
