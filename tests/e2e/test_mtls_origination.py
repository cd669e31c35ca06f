"""Istio's mutual TLS origination at the egress gateway, on real Envoy, real nginx with
``ssl_verify_client on`` (the task's ``my-nginx`` in ``mesh-external``), real curl, and the
client credential as a Secret in the gateway's namespace. Then every way it can fail: a 503 at
the client, the reason in the gateway's access log, never plaintext."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exitgate.ca import certs
from exitgate.demo.standins import DnsStandIn, NginxServer, find_nginx
from exitgate.envoy.ports import free_port
from exitgate.mesh import ExternalService, ServicePortMap

from tests.e2e.harness import EXAMPLES, Exitgate, make_mesh, start_exitgate, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

MTLS = EXAMPLES / "mtls-origination"
NGINX_HOST = "my-nginx.mesh-external.svc.cluster.local"
URL = f"http://{NGINX_HOST}"
WELCOME = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>exitgate test</body>\n</html>\n"

NGINX_CONF = """
http {{
  server {{
    listen 127.0.0.1:{port} ssl;
    root html;
    index index.html;
    server_name {host};
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    ssl_client_certificate ca.crt;
    ssl_verify_client on;
    add_header X-Client-Serial $ssl_client_serial always;
  }}
}}
"""


@dataclass
class Pki:
    """Istio's task's certificates: an example.com root, the nginx server, the client."""

    dir: Path
    root: bytes
    root_key: bytes
    server: bytes
    server_key: bytes
    server_serial: int

    def write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        certs.write_private(path, data)
        return path

    def client(self, serial: int, root: bytes | None = None, root_key: bytes | None = None) -> tuple[Path, Path]:
        cert, key = certs.make_leaf(root or self.root, root_key or self.root_key, "client.example.com", [],
                                    org="client organization", client=True, serial=serial)
        return self.write(f"client-{serial}.crt", cert), self.write(f"client-{serial}.key", key)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    root, root_key = certs.make_root("example.com", "example Inc.")
    serial = 7
    server, server_key = certs.make_leaf(root, root_key, NGINX_HOST, [NGINX_HOST], org="some organization", serial=serial)
    d = tmp_path / "pki"
    d.mkdir()
    p = Pki(d, root, root_key, server, server_key, serial)
    p.write("example.com.crt", root)
    return p


@pytest.fixture
def exitgate(tmp_path: Path, pki: Pki) -> Iterator[Exitgate]:
    port = free_port()
    nginx = NginxServer(tmp_path / "nginx", NGINX_CONF.format(port=port, host=NGINX_HOST), port=port,
                        files={"server.crt": pki.server, "server.key": pki.server_key, "ca.crt": pki.root,
                               "html/index.html": WELCOME})
    nginx.start()
    dns = DnsStandIn({})
    try:
        dns.start()
        trust = tmp_path / "system-trust.pem"
        trust.write_bytes(certs.make_root("a public CA", "not example.com", key_type="ec256")[0])
        mesh = make_mesh(trust, dns.port, {}, services=[ExternalService(
            name="my-nginx", namespace="mesh-external",
            ports=[ServicePortMap(port=443, target_port=port, protocol="HTTPS")])])
        eg = start_exitgate(tmp_path / "state", mesh)
        try:
            yield eg
        finally:
            eg.cp.stop()
    finally:
        dns.stop()
        nginx.stop()


def create_client_credential(eg: Exitgate, pki: Pki, serial: int = 1, namespace: str = "istio-system",
                             ca: bytes | None = None, with_client_cert: bool = True) -> str:
    args = ["create", "secret", "generic", "client-credential", "-n", namespace]
    if with_client_cert:
        crt, key = pki.client(serial)
        args += [f"--from-file=tls.key={key}", f"--from-file=tls.crt={crt}"]
    ca_path = pki.write("ca-for-secret.crt", ca) if ca is not None else pki.dir / "example.com.crt"
    args += [f"--from-file=ca.crt={ca_path}"]
    return eg.cli(*args, check=True).stdout


def apply_task(eg: Exitgate, dr: Path = MTLS / "03-originate-mtls.yaml") -> None:
    eg.apply(MTLS / "01-gateway-and-destinationrule.yaml", MTLS / "02-virtualservice.yaml")
    out = eg.cli("apply", "-n", "istio-system", "-f", str(dr), check=True).stdout
    assert "destinationrule.networking.istio.io/originate-mtls-for-nginx" in out


def fetch(eg: Exitgate) -> tuple[str, str]:
    """(status code, headers and body) of the task's request through the sidecar."""
    proc = eg.curl("-s", "-i", URL)
    first = proc.stdout.split("\r\n", 1)[0]
    m = re.match(r"HTTP/\S+ (\d+)", first)
    return (m.group(1) if m else "000"), proc.stdout


def wait_status(eg: Exitgate, code: str, timeout: float = 15.0) -> str:
    out = until(lambda: "|".join(fetch(eg)), lambda o: o.startswith(code + "|"), timeout=timeout)
    assert out.startswith(code + "|"), f"expected {code}, got: {out[:400]}\nevents: {eg.events[-5:]}"
    return out


def gateway_line(eg: Exitgate, needle: str) -> str:
    log = until(eg.gateway_log, lambda o: needle in o)
    lines = [x for x in log.splitlines() if needle in x and NGINX_HOST in x]
    assert lines, f"no gateway log line with {needle!r}:\n{log[-2000:]}"
    return lines[-1]


def test_mutual_tls_origination_with_a_secret(exitgate: Exitgate, pki: Pki) -> None:
    assert "secret/client-credential created" in create_client_credential(exitgate, pki, serial=1)
    apply_task(exitgate)
    out = wait_status(exitgate, "200")
    assert "Welcome to nginx!" in out
    assert re.search(r"(?im)^x-client-serial: 0?1\r?$", out), out  # nginx saw the Secret's client certificate
    line = gateway_line(exitgate, '"GET / HTTP/2" 200')
    assert f"outbound|443||{NGINX_HOST}" in line
    table = exitgate.cli("proxy-config", "secret", "istio-egressgateway", check=True).stdout
    for name in ("kubernetes://client-credential ", "kubernetes://client-credential-cacert "):
        row = next((r for r in table.splitlines() if r.startswith(name)), "")
        assert "ACTIVE" in row and " true " in row, table
    assert re.search(r"kubernetes://client-credential\s+Cert Chain\s+ACTIVE\s+true\s+1\s", table), table
    # Secret data is never printed by get, only with -o yaml (base64, like kubectl).
    listing = exitgate.cli("get", "secret", "-n", "istio-system", check=True).stdout
    assert "client-credential" in listing and "BEGIN" not in listing and "tls.key" not in listing
    assert "tls.key:" in exitgate.cli("get", "secret", "client-credential", "-n", "istio-system", "-o", "yaml").stdout


def test_a_renewed_client_certificate_is_used_without_restart(exitgate: Exitgate, pki: Pki) -> None:
    create_client_credential(exitgate, pki, serial=1)
    apply_task(exitgate)
    out = wait_status(exitgate, "200")
    assert re.search(r"(?im)^x-client-serial: 0?1\r?$", out)
    pids = [p.record.pid for p in exitgate.cp.proxies]
    assert "configured" in create_client_credential(exitgate, pki, serial=2)
    out = until(lambda: fetch(exitgate)[1], lambda o: re.search(r"(?im)^x-client-serial: 0?2\r?$", o) is not None)
    assert re.search(r"(?im)^x-client-serial: 0?2\r?$", out), out
    assert [p.record.pid for p in exitgate.cp.proxies] == pids


def test_server_certificate_from_an_untrusted_root(exitgate: Exitgate, pki: Pki) -> None:
    other_root, _ = certs.make_root("other.example", "someone else")
    create_client_credential(exitgate, pki, ca=other_root)
    apply_task(exitgate)
    wait_status(exitgate, "503")
    assert "CERTIFICATE_VERIFY_FAILED" in gateway_line(exitgate, '" 503 URX,UF')


def test_server_name_does_not_match_subject_alt_names(exitgate: Exitgate, pki: Pki, tmp_path: Path) -> None:
    create_client_credential(exitgate, pki)
    dr = tmp_path / "dr.yaml"
    dr.write_text((MTLS / "03-originate-mtls.yaml").read_text().replace(
        "        # subjectAltNames: # can be enabled if the certificate was generated with SAN as specified in previous section\n"
        "        # - my-nginx.mesh-external.svc.cluster.local",
        "        subjectAltNames:\n        - not-my-nginx.example.com"))
    assert "not-my-nginx" in dr.read_text()
    apply_task(exitgate, dr)
    wait_status(exitgate, "503")
    assert "CERTIFICATE_VERIFY_FAILED" in gateway_line(exitgate, '" 503 URX,UF')


def test_missing_secret(exitgate: Exitgate) -> None:
    apply_task(exitgate)
    wait_status(exitgate, "503")
    assert '"TLS_error:_Secret_is_not_supplied_by_SDS"' in gateway_line(exitgate, '" 503 URX,UF')
    assert any("Referenced credentialName not found: Secret istio-system/client-credential" in e for e in exitgate.events)


def test_secret_in_another_namespace_is_not_used(exitgate: Exitgate, pki: Pki) -> None:
    create_client_credential(exitgate, pki, namespace="default")
    apply_task(exitgate)
    wait_status(exitgate, "503")
    assert any("exists in namespace default" in e for e in exitgate.events), exitgate.events


def test_secret_without_a_client_certificate(exitgate: Exitgate, pki: Pki) -> None:
    create_client_credential(exitgate, pki, with_client_cert=False)
    apply_task(exitgate)
    wait_status(exitgate, "503")
    assert '"TLS_error:_Secret_is_not_supplied_by_SDS"' in gateway_line(exitgate, '" 503 URX,UF')
    assert any("has no client certificate and key" in e for e in exitgate.events)


def test_client_certificate_the_server_rejects(exitgate: Exitgate, pki: Pki) -> None:
    other_root, other_key = certs.make_root("other.example", "someone else")
    crt, key = pki.client(5, root=other_root, root_key=other_key)
    exitgate.cli("create", "secret", "generic", "client-credential", "-n", "istio-system",
                 f"--from-file=tls.key={key}", f"--from-file=tls.crt={crt}",
                 f"--from-file=ca.crt={pki.dir / 'example.com.crt'}", check=True)
    apply_task(exitgate)
    # nginx completes the handshake and answers 400 "The SSL certificate error" itself.
    out = wait_status(exitgate, "400")
    assert "SSL certificate error" in out


def _with_crl(exitgate: Exitgate, pki: Pki, revoked: list[int]) -> None:
    crt, key = pki.client(1)
    crl = pki.write("example.com.crl", certs.make_crl(pki.root, pki.root_key, revoked))
    exitgate.cli("create", "secret", "generic", "client-credential", "-n", "istio-system",
                 f"--from-file=tls.key={key}", f"--from-file=tls.crt={crt}",
                 f"--from-file=ca.crt={pki.dir / 'example.com.crt'}", f"--from-file=ca.crl={crl}", check=True)
    apply_task(exitgate)


def test_server_certificate_revoked_by_the_crl(exitgate: Exitgate, pki: Pki) -> None:
    _with_crl(exitgate, pki, [pki.server_serial])
    wait_status(exitgate, "503")
    assert "CERTIFICATE_VERIFY_FAILED" in gateway_line(exitgate, '" 503 URX,UF')


def test_crl_that_does_not_list_the_server_changes_nothing(exitgate: Exitgate, pki: Pki) -> None:
    _with_crl(exitgate, pki, [pki.server_serial + 100])
    assert "Welcome to nginx!" in wait_status(exitgate, "200")


def test_mutual_tls_with_certificate_files(exitgate: Exitgate, pki: Pki, tmp_path: Path) -> None:
    """clientCertificate/privateKey/caCertificates as paths: read by the control plane, sent by SDS."""
    crt, key = pki.client(3)
    dr = tmp_path / "dr-files.yaml"
    dr.write_text((MTLS / "03-originate-mtls.yaml").read_text().replace(
        "        credentialName: client-credential # this must match the secret created earlier to hold client certs\n",
        f"        clientCertificate: {crt}\n        privateKey: {key}\n        caCertificates: {pki.dir / 'example.com.crt'}\n"))
    assert "clientCertificate" in dr.read_text()
    apply_task(exitgate, dr)
    out = wait_status(exitgate, "200")
    assert re.search(r"(?im)^x-client-serial: 0?3\r?$", out), out
    # Envoy holds the key in memory only; its bootstrap and the config it was sent name no key file.
    bootstrap = next((exitgate.state_dir / "run").glob("istio-egressgateway*.bootstrap.json")).read_text()
    assert str(key) not in bootstrap


def test_insecure_skip_verify_accepts_an_untrusted_server(exitgate: Exitgate, pki: Pki, tmp_path: Path) -> None:
    """The one way to turn server verification off is to say so."""
    crt, key = pki.client(4)
    dr = tmp_path / "dr-insecure.yaml"
    dr.write_text((MTLS / "03-originate-mtls.yaml").read_text().replace(
        "        credentialName: client-credential # this must match the secret created earlier to hold client certs\n",
        f"        clientCertificate: {crt}\n        privateKey: {key}\n        insecureSkipVerify: true\n"))
    apply_task(exitgate, dr)
    assert "Welcome to nginx!" in wait_status(exitgate, "200")


def test_a_renewed_certificate_file_is_used_without_restart(exitgate: Exitgate, pki: Pki, tmp_path: Path) -> None:
    """With clientCertificate/privateKey paths, replacing the files on disk is enough: the
    control plane notices, re-reads them and sends them by SDS; connections made with the old
    certificate are drained."""
    crt, key = pki.client(3)
    live_crt, live_key = tmp_path / "live-client.crt", tmp_path / "live-client.key"
    certs.write_private(live_crt, crt.read_bytes())
    certs.write_private(live_key, key.read_bytes())
    dr = tmp_path / "dr-files.yaml"
    dr.write_text((MTLS / "03-originate-mtls.yaml").read_text().replace(
        "        credentialName: client-credential # this must match the secret created earlier to hold client certs\n",
        f"        clientCertificate: {live_crt}\n        privateKey: {live_key}\n        caCertificates: {pki.dir / 'example.com.crt'}\n"))
    apply_task(exitgate, dr)
    assert re.search(r"(?im)^x-client-serial: 0?3\r?$", wait_status(exitgate, "200"))
    pids = [p.record.pid for p in exitgate.cp.proxies]
    crt9, key9 = pki.client(9)
    certs.write_private(live_key, key9.read_bytes())
    certs.write_private(live_crt, crt9.read_bytes())
    out = until(lambda: fetch(exitgate)[1], lambda o: re.search(r"(?im)^x-client-serial: 0?9\r?$", o) is not None)
    assert re.search(r"(?im)^x-client-serial: 0?9\r?$", out), out
    assert [p.record.pid for p in exitgate.cp.proxies] == pids
