"""Istio's "Egress Gateways with TLS Origination" (SIMPLE), its YAML unchanged, on real Envoy
processes, real curl, and nginx as edition.cnn.com (port 80: 301 to https; port 443: TLS)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exitgate.ca import certs
from exitgate.demo.standins import DnsStandIn, NginxServer, find_nginx
from exitgate.envoy.ports import free_port
from exitgate.mesh import ProxyStatsMatcher

from tests.e2e.harness import CAPTURE_MODES, EXAMPLES, Exitgate, start_exitgate, make_mesh, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

TLS = EXAMPLES / "tls-origination"
HOST = "edition.cnn.com"

NGINX_CONF = """
http {{
  server {{
    listen 127.0.0.1:{p80};
    server_name {host};
    return 301 https://$host$request_uri;
  }}
  server {{
    listen 127.0.0.1:{p443} ssl;
    server_name {host};
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    location / {{
      default_type text/html;
      return 200 "<html><body>politics, over TLS</body></html>\\n";
    }}
  }}
}}
"""


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Exitgate]]:
    """Starts nginx as edition.cnn.com, the DNS stand-in and exitgate; stops them all after.
    ``trust_server=False`` gives the gateway a trust store without nginx's CA."""
    root, root_key = certs.make_root("test external CA", "exitgate tests", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, HOST, [HOST], key_type="ec256")
    stops: list[Callable[[], None]] = []
    started: list[Exitgate] = []

    def _start(trust_server: bool = True, capture: str = "auto", **mesh_fields: Any) -> Exitgate:
        trust = tmp_path / "trust.pem"
        trust.write_bytes(root if trust_server else certs.make_root("unrelated CA", "elsewhere", key_type="ec256")[0])
        p80, p443 = free_port(), free_port()
        nginx = NginxServer(tmp_path / "nginx", NGINX_CONF.format(p80=p80, p443=p443, host=HOST), port=p443,
                            files={"server.crt": leaf, "server.key": key})
        nginx.start()
        stops.append(nginx.stop)
        dns = DnsStandIn({HOST: "127.0.0.1"}).start()
        stops.append(dns.stop)
        mesh = make_mesh(trust, dns.port, {80: p80, 443: p443}, capture=capture).model_copy(update=mesh_fields)
        eg = start_exitgate(tmp_path / "state", mesh)
        stops.insert(0, eg.cp.stop)
        started.append(eg)
        return eg

    try:
        yield _start
    finally:
        for stop in stops:
            stop()
    for eg in started:
        for p in eg.cp.proxies:
            assert p.record.pid is not None
            assert not Path(f"/proc/{p.record.pid}").exists(), f"{p.record.name} still running"


@pytest.fixture
def exitgate(start: Callable[..., Exitgate]) -> Exitgate:
    return start()


def status_line(out: str) -> str:
    return out.splitlines()[0] if out else ""


@pytest.mark.parametrize("delta_xds", [True, False], ids=["incremental-xds", "state-of-the-world-xds"])
def test_tls_origination_at_the_egress_gateway(start: Callable[..., Exitgate], delta_xds: bool) -> None:
    exitgate = start(delta_xds=delta_xds)
    boot = (exitgate.state_dir / "run" / "istio-egressgateway.istio-system.bootstrap.json").read_text()
    assert ('"api_type": "DELTA_GRPC"' in boot) is delta_xds
    url = f"http://{HOST}/politics"
    head = ["-o", "/dev/null", "-D", "-", url]

    out = exitgate.apply(TLS / "01-serviceentry.yaml")
    assert "serviceentry.networking.istio.io/cnn created" in out
    resp = until(lambda: exitgate.curl(*head).stdout, lambda o: "301" in status_line(o))
    assert status_line(resp) == "HTTP/1.1 301 Moved Permanently"
    assert f"location: https://{HOST}/politics" in resp.lower()

    exitgate.apply(TLS / "02-gateway-and-destinationrule.yaml")
    exitgate.apply(TLS / "03-virtualservice-and-tls-origination.yaml")
    resp = until(lambda: exitgate.curl(*head).stdout, lambda o: "200" in status_line(o))
    assert status_line(resp) == "HTTP/1.1 200 OK"
    assert "politics, over TLS" in exitgate.curl(url).stdout

    log = until(exitgate.gateway_log, lambda o: f"outbound|443||{HOST}" in o)
    line = next(x for x in log.splitlines() if f"outbound|443||{HOST}" in x)
    # Istio's default format: the sidecar reached the gateway over HTTP/2 (mTLS), the gateway
    # answered 200 from upstream, for this authority, via the TLS-originating cluster.
    assert '"GET /politics HTTP/2" 200 - via_upstream' in line
    assert f'"{HOST}" "127.0.0.1:' in line
    # The CLI shows the same line.
    assert f"outbound|443||{HOST}" in exitgate.cli("logs", "istio-egressgateway").stdout

    exitgate.delete(TLS / "02-gateway-and-destinationrule.yaml", TLS / "03-virtualservice-and-tls-origination.yaml")
    resp = until(lambda: exitgate.curl(*head).stdout, lambda o: "301" in status_line(o))
    assert status_line(resp) == "HTTP/1.1 301 Moved Permanently"


def test_sidecar_to_gateway_is_mutual_tls_with_spiffe_identities(start: Callable[..., Exitgate]) -> None:
    # Istio's stats matcher keeps per-listener TLS stats only when the proxy config asks.
    exitgate = start(proxy_stats_matcher=ProxyStatsMatcher(inclusion_suffixes=["ssl.handshake"]))
    exitgate.apply(TLS)
    resp = until(lambda: exitgate.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}/politics").stdout,
                 lambda o: o == "200")
    assert resp == "200"
    gw = exitgate.cp.proxies[0]
    sidecar = exitgate.cp.proxies[1]
    import urllib.request

    stats = urllib.request.urlopen(f"http://127.0.0.1:{gw.record.admin_port}/stats?filter=ssl", timeout=5).read().decode()
    assert re.search(r"^listener\.127\.0\.0\.1_\d+\.ssl\.handshake: [1-9]", stats, re.M), stats
    # Everything else per listener or per cluster is trimmed, as in Istio's default.
    everything = urllib.request.urlopen(f"http://127.0.0.1:{gw.record.admin_port}/stats", timeout=5).read().decode()
    assert "cluster_manager.cds.update_success" in everything
    trimmed = [line.split(":")[0] for line in everything.splitlines() if line.startswith(("listener.", "cluster.outbound|"))]
    assert trimmed and all(n.endswith(("ssl.handshake", "downstream_cx_active")) for n in trimmed), trimmed
    certs_json = urllib.request.urlopen(f"http://127.0.0.1:{sidecar.record.admin_port}/certs", timeout=5).read().decode()
    assert "spiffe://cluster.local/ns/default/sa/sleep" in certs_json
    certs_json = urllib.request.urlopen(f"http://127.0.0.1:{gw.record.admin_port}/certs", timeout=5).read().decode()
    assert "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account" in certs_json


def test_untrusted_server_certificate_is_a_503_not_plaintext(start: Callable[..., Exitgate]) -> None:
    """Secure by default: SIMPLE without caCertificates verifies against the trust store; a
    server certificate from another root fails closed with the reason in the gateway's log."""
    exitgate = start(trust_server=False)
    exitgate.apply(TLS)
    code = until(lambda: exitgate.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}/politics").stdout,
                 lambda o: o == "503")
    assert code == "503"
    log = until(exitgate.gateway_log, lambda o: "CERTIFICATE_VERIFY_FAILED" in o)
    line = next(x for x in log.splitlines() if "CERTIFICATE_VERIFY_FAILED" in x)
    # Istio's default retry policy retries the failed connection: retries exhausted (URX), then UF.
    assert '"GET /politics HTTP/2" 503 URX,UF' in line
    assert f"outbound|443||{HOST}" in line


def test_a_bad_ca_file_changes_nothing(exitgate: Exitgate, tmp_path: Path) -> None:
    """A caCertificates file that is not PEM: the control plane says which file and why, and the
    proxies keep their last good configuration (Envoy is never sent what it would reject)."""
    exitgate.apply(TLS)
    ok = until(lambda: exitgate.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}/politics").stdout,
               lambda o: o == "200")
    assert ok == "200"
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("this is not a certificate\n")
    dr = tmp_path / "dr.yaml"
    dr.write_text((TLS / "03-virtualservice-and-tls-origination.yaml").read_text().replace(
        "        mode: SIMPLE # initiates HTTPS for connections to edition.cnn.com",
        f"        mode: SIMPLE\n        caCertificates: {bad}"))
    assert str(bad) in dr.read_text()
    exitgate.cli("apply", "-f", str(dr), check=True)
    events = until(lambda: "\n".join(exitgate.events), lambda o: "keeps its last good configuration" in o)
    assert f"CA certificates {bad}: not a valid PEM certificate" in events, events
    assert "istio-egressgateway.istio-system keeps its last good configuration" in events
    assert "NACK" not in events
    for _ in range(3):
        assert exitgate.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}/politics").stdout == "200"


def test_sidecar_originates_tls_with_target_port(exitgate: Exitgate) -> None:
    """Istio's "Egress TLS Origination" task: port 80 with ``targetPort: 443`` and SIMPLE at the
    sidecar. Plain HTTP from the workload arrives at the server's TLS port, over TLS."""
    curl = lambda: exitgate.curl("-o", "/dev/null", "-D", "-", f"http://{HOST}/politics").stdout  # noqa: E731
    exitgate.apply(EXAMPLES / "egress-tls-origination")
    out = until(curl, lambda o: "200 OK" in o)
    assert "HTTP/1.1 200 OK" in out, out
    sidecar_log = Path(exitgate.cp.proxies[1].record.log_path)
    line = until(lambda: sidecar_log.read_text(errors="replace"),
                 lambda text: f"outbound|80||{HOST}" in text and '"GET /politics HTTP/1.1" 200' in text)
    last = [ln for ln in line.splitlines() if '"GET /politics HTTP/1.1" 200' in ln][-1]
    assert f"outbound|80||{HOST}" in last, last
    # The upstream host is nginx's TLS port (443 mapped here), not its plain port 80.
    p443 = exitgate.cp.mesh.external_port(443)
    assert f"127.0.0.1:{p443}" in last, last


REGISTRY_ONLY = """apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
"""


def test_https_leaves_through_the_sidecar_as_connect(start: Callable[..., Exitgate], tmp_path: Path) -> None:
    """Without capture. ``curl -sSL`` as Istio's task writes it: the 301 is followed to https://,
    and that request too goes through the sidecar (https_proxy: CONNECT edition.cnn.com:443), to
    the ServiceEntry's HTTPS port, the workload's own TLS passing through. Unregistered hosts then
    follow the outbound policy: REGISTRY_ONLY refuses the tunnel with 502."""
    exitgate = start(capture="off")
    exitgate.apply(TLS / "01-serviceentry.yaml")
    ca = str(tmp_path / "trust.pem")
    follow = lambda: exitgate.curl("-L", "--cacert", ca, "-o", "/dev/null", "-D", "-",  # noqa: E731
                                   f"http://{HOST}/politics").stdout
    out = until(follow, lambda o: "301" in o and o.count("HTTP/1.1 200") >= 2)
    assert "HTTP/1.1 301 Moved Permanently" in out and f"location: https://{HOST}/politics" in out, out
    # The tunnel's answer, then the page's, over the workload's own TLS.
    assert out.count("HTTP/1.1 200") >= 2, out
    sidecar_log = Path(exitgate.cp.proxies[1].record.log_path)
    log = until(lambda: sidecar_log.read_text(errors="replace"), lambda t: "CONNECT" in t)
    tunnel = [ln for ln in log.splitlines() if '"CONNECT' in ln][-1]
    assert f"outbound|443||{HOST}" in tunnel and f"127.0.0.1:{exitgate.cp.mesh.external_port(443)}" in tunnel, tunnel
    # ALLOW_ANY: a host no ServiceEntry declares is tunnelled too, by PassthroughCluster.
    p443 = exitgate.cp.mesh.external_port(443)
    passed = exitgate.curl("-k", "-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{p443}/")
    assert passed.stdout == "200", passed.stdout + passed.stderr
    log = until(lambda: sidecar_log.read_text(errors="replace"), lambda t: "PassthroughCluster" in t)
    assert any('"CONNECT' in ln and "PassthroughCluster" in ln for ln in log.splitlines()), log[-2000:]
    (tmp_path / "registry-only.yaml").write_text(REGISTRY_ONLY)
    exitgate.apply(tmp_path / "registry-only.yaml")
    refused = exitgate.curl("--cacert", ca, "https://unregistered.invalid/")
    assert refused.returncode != 0 and "502" in refused.stderr, refused.stderr
    # A registered host still goes through.
    assert "HTTP/1.1 200" in exitgate.curl("--cacert", ca, "-o", "/dev/null", "-D", "-", f"https://{HOST}/").stdout


@pytest.mark.parametrize("capture", CAPTURE_MODES)
def test_https_through_the_egress_gateway_by_sni(start: Callable[..., Exitgate], tmp_path: Path, capture: str) -> None:
    """Istio's "Egress Gateways" task, HTTPS section, its YAML unchanged: the workload's own TLS
    goes sidecar -> egress gateway (TLS PASSTHROUGH, routed by SNI) -> edition.cnn.com:443; in a
    CONNECT tunnel without capture, captured by its SNI (Istio's ``0.0.0.0_443`` chain)."""
    exitgate = start(capture=capture)
    captured = capture == "on"
    assert bool(exitgate.cp.proxies[1].record.netns) == captured
    https = EXAMPLES / "egress-gateway-https"
    exitgate.apply(https / "01-serviceentry.yaml", https / "02-gateway-destinationrule-virtualservice.yaml")
    ca = str(tmp_path / "trust.pem")
    page = lambda: exitgate.curl("-L", "--cacert", ca, "-o", "/dev/null", "-D", "-",  # noqa: E731
                                 f"https://{HOST}/politics").stdout
    # The page's answer (and without capture the tunnel's before it).
    answers = 1 if captured else 2
    out = until(page, lambda o: o.count("HTTP/1.1 200") >= answers)
    assert out.count("HTTP/1.1 200") >= answers, out
    sidecar_log = Path(exitgate.cp.proxies[1].record.log_path)
    # Captured, the sidecar logs the connection as TCP with the SNI it routed by.
    mark = f" {HOST} " if captured else '"CONNECT'
    log = until(lambda: sidecar_log.read_text(errors="replace"), lambda t: mark in t)
    tunnel = [ln for ln in log.splitlines() if mark in ln][-1]
    assert "outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local" in tunnel, tunnel
    if captured:
        # What follows sends another SNI through the tunnel to the routed host, which only a
        # CONNECT tunnel can do: captured, the SNI alone picks the chain.
        return
    # The gateway saw the client's SNI and passed the TLS on, untouched, to the server's port.
    gw = until(exitgate.gateway_log, lambda t: f"outbound|443||{HOST}" in t)
    line = [ln for ln in gw.splitlines() if f"outbound|443||{HOST}" in ln][-1]
    assert f"127.0.0.1:{exitgate.cp.mesh.external_port(443)}" in line and f" {HOST} " in line, line
    # A name no tls route lists is refused at the gateway, even through the tunnel to a routed
    # host (-k: were it passed on, nginx would answer it, certificate name aside).
    refused = exitgate.curl("-k", "--connect-to", f"other.example:443:{HOST}:443", "https://other.example/")
    assert refused.returncode != 0 and "politics" not in refused.stdout, refused.stdout
    before = log.count('"CONNECT')
    log = until(lambda: sidecar_log.read_text(errors="replace"), lambda t: t.count('"CONNECT') > before)
    last = [ln for ln in log.splitlines() if '"CONNECT' in ln][-1]
    # It did reach the gateway, which closed it without answering (UC, nothing received).
    assert f'"{HOST}:443"' in last and "outbound|443|cnn|" in last and " UC " in last, last


DENY_SLEEP = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-sleep, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]
"""


def test_https_wrapped_in_mutual_tls_to_the_egress_gateway(exitgate: Exitgate, tmp_path: Path) -> None:
    """The mutual-TLS form of the task: the sidecar wraps the workload's TLS in ISTIO_MUTUAL to the
    gateway's TLS server, which terminates it and sends the inner TLS on by a ``tcp`` route. The
    gateway knows the workload's SPIFFE identity on that hop: a DENY for it refuses the tunnel."""
    mtls = EXAMPLES / "egress-gateway-https-mtls"
    exitgate.apply(mtls / "01-serviceentry.yaml", mtls / "02-gateway-destinationrule-virtualservice.yaml")
    ca = str(tmp_path / "trust.pem")
    page = lambda: exitgate.curl("--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}",  # noqa: E731
                                 f"https://{HOST}/politics")
    assert until(lambda: page().stdout, lambda o: o == "200") == "200"
    gw = until(exitgate.gateway_log, lambda t: f"outbound|443||{HOST}" in t)
    line = [ln for ln in gw.splitlines() if f"outbound|443||{HOST}" in ln][-1]
    # The SNI the gateway saw is the mTLS one the DestinationRule sets; upstream is nginx's TLS port.
    assert f"127.0.0.1:{exitgate.cp.mesh.external_port(443)}" in line and f" {HOST} " in line, line
    (tmp_path / "deny.yaml").write_text(DENY_SLEEP)
    exitgate.apply(tmp_path / "deny.yaml")
    denied = until(lambda: page().stdout, lambda o: o != "200")
    assert denied != "200", denied
    gw = until(exitgate.gateway_log, lambda t: "policy[deny-sleep]" in t)
    assert "rbac_access_denied_matched_policy[ns[istio-system]-policy[deny-sleep]-rule[0]]" in gw
    exitgate.delete(tmp_path / "deny.yaml")
    assert until(lambda: page().stdout, lambda o: o == "200") == "200"
