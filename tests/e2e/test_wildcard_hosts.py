"""Istio's "Egress using Wildcard Hosts", its YAML unchanged: a wildcard ServiceEntry with
resolution NONE, the workload's HTTPS straight from the sidecar to whichever *.wikipedia.org it
asked for; then the single-hosting-server form through the egress gateway (TLS passthrough).

nginx stands in for Wikipedia on port 443 of a loopback address of its own (resolution NONE
goes to the host's real port, which only root may open), with one certificate for
*.wikipedia.org and a title per name, as the task's greps expect."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitgate.ca import certs
from exitgate.demo.standins import DnsStandIn, NginxServer, find_nginx

from tests.e2e.harness import EXAMPLES, Exitgate, make_mesh, start_exitgate, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="port 443 needs root")]

WILDCARD = EXAMPLES / "wildcard-hosts"
ADDRESS = "127.0.0.77"
TITLES = {"en.wikipedia.org": "Wikipedia, the free encyclopedia",
          "de.wikipedia.org": "Wikipedia – Die freie Enzyklopädie"}

NGINX_CONF = """
http {{
  log_format sni '$ssl_server_name $host $request_uri';
  access_log {log} sni;
  server {{
    listen {address}:443 ssl;
    server_name _;
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    charset utf-8;
    location / {{
      default_type text/html;
      if ($host = en.wikipedia.org) {{ return 200 "<html><title>{en}</title></html>\\n"; }}
      if ($host = de.wikipedia.org) {{ return 200 "<html><title>{de}</title></html>\\n"; }}
      return 200 "<html><title>www</title></html>\\n";
    }}
  }}
}}
"""

TASK = ('curl -s https://en.wikipedia.org/wiki/Main_Page | grep -o "<title>.*</title>"; '
        'curl -s https://de.wikipedia.org/wiki/Wikipedia:Hauptseite | grep -o "<title>.*</title>"')


@pytest.fixture
def exitgate(tmp_path: Path) -> Iterator[tuple[Exitgate, Path]]:
    root, root_key = certs.make_root("test Wikipedia CA", "exitgate tests", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, "*.wikipedia.org", ["*.wikipedia.org", "wikipedia.org"],
                                key_type="ec256")
    (tmp_path / "ca.pem").write_bytes(root)
    log = tmp_path / "nginx-sni.log"
    conf = NGINX_CONF.format(address=ADDRESS, log=log, en=TITLES["en.wikipedia.org"], de=TITLES["de.wikipedia.org"])
    nginx = NginxServer(tmp_path / "nginx", conf, port=443, host=ADDRESS, files={"server.crt": leaf, "server.key": key})
    nginx.start()
    dns = DnsStandIn({h: ADDRESS for h in ("en.wikipedia.org", "de.wikipedia.org", "www.wikipedia.org")}).start()
    try:
        eg = start_exitgate(tmp_path / "state", make_mesh(tmp_path / "ca.pem", dns.port, {}))
        try:
            yield eg, log
        finally:
            eg.cp.stop()
    finally:
        dns.stop()
        nginx.stop()


def titles(eg: Exitgate, ca: Path) -> str:
    out = eg.cli("exec", "sleep", "--", "sh", "-c", TASK.replace("curl -s", f"curl -s --cacert {ca}"))
    return out.stdout


def test_wildcard_host_direct_then_through_one_hosting_server(exitgate: tuple[Exitgate, Path],
                                                               tmp_path: Path) -> None:
    eg, nginx_log = exitgate
    ca = tmp_path / "ca.pem"
    eg.apply(WILDCARD / "01-direct-serviceentry.yaml")
    want = "".join(f"<title>{TITLES[h]}</title>\n" for h in ("en.wikipedia.org", "de.wikipedia.org"))
    assert until(lambda: titles(eg, ca), lambda o: o == want) == want
    sidecar_log = Path(eg.cp.proxies[1].record.log_path)
    # A CONNECT tunnel without capture; captured, a TCP connection routed by its SNI.
    seen = " de.wikipedia.org " if eg.cp.proxies[1].record.netns else "de.wikipedia.org:443"
    log = until(lambda: sidecar_log.read_text(errors="replace"), lambda t: seen in t)
    assert any("outbound|443||*.wikipedia.org" in ln and seen in ln for ln in log.splitlines()), log[-1500:]
    assert "de.wikipedia.org de.wikipedia.org /wiki/Wikipedia:Hauptseite" in nginx_log.read_text()

    eg.delete(WILDCARD / "01-direct-serviceentry.yaml")
    eg.apply(WILDCARD / "02-single-hosting-server.yaml")
    assert until(lambda: titles(eg, ca), lambda o: o == want) == want
    gw = until(eg.gateway_log, lambda t: "outbound|443||www.wikipedia.org" in t and "de.wikipedia.org" in t)
    # The gateway routed by the client's SNI and passed its TLS on to www.wikipedia.org's address.
    assert any("outbound|443||www.wikipedia.org" in ln and " en.wikipedia.org " in ln for ln in gw.splitlines()), gw
    assert any("outbound|443||www.wikipedia.org" in ln and " de.wikipedia.org " in ln for ln in gw.splitlines()), gw


def test_the_gateway_originates_tls_to_whichever_wildcard_host_was_asked(exitgate: tuple[Exitgate, Path]) -> None:
    """DYNAMIC_DNS at the gateway (beyond Istio): plain HTTP from the workload, TLS from the
    gateway to the host the request names, verified against the certificate for that name."""
    eg, nginx_log = exitgate
    eg.apply(EXAMPLES / "wildcard-origination")
    for host, title in TITLES.items():
        out = until(lambda host=host: eg.curl(f"http://{host}/wiki/x").stdout, lambda o: title in o)
        assert f"<title>{title}</title>" in out, out
    gw = until(eg.gateway_log, lambda t: "de.wikipedia.org" in t and "outbound|443||*.wikipedia.org" in t)
    line = [ln for ln in gw.splitlines() if '"de.wikipedia.org"' in ln][-1]
    assert '"GET /wiki/x HTTP/2" 200' in line and "outbound|443||*.wikipedia.org" in line, line
    # nginx saw TLS with the SNI of each name asked for.
    served = nginx_log.read_text()
    assert "en.wikipedia.org en.wikipedia.org /wiki/x" in served and "de.wikipedia.org de.wikipedia.org /wiki/x" in served


def test_https_to_any_wildcard_host_passes_through_the_gateway(exitgate: tuple[Exitgate, Path], tmp_path: Path) -> None:
    """DYNAMIC_DNS at the gateway for TLS passthrough (beyond Istio): the gateway resolves each
    connection's SNI and passes the workload's own TLS through to that host; no hosting server."""
    eg, nginx_log = exitgate
    ca = tmp_path / "ca.pem"
    eg.apply(EXAMPLES / "wildcard-passthrough")
    want = "".join(f"<title>{TITLES[h]}</title>\n" for h in ("en.wikipedia.org", "de.wikipedia.org"))
    assert until(lambda: titles(eg, ca), lambda o: o == want) == want
    gw = until(eg.gateway_log, lambda t: " de.wikipedia.org " in t and "outbound|443||*.wikipedia.org" in t)
    for host in ("en.wikipedia.org", "de.wikipedia.org"):
        # Passed through (no HTTP seen at the gateway), to the address the SNI resolved to.
        line = [ln for ln in gw.splitlines() if f" {host} " in ln and "outbound|443||*.wikipedia.org" in ln][-1]
        assert line.split("]", 1)[1].startswith(' "- - -"') and f'"{ADDRESS}:443"' in line, line
    # nginx saw the workload's own TLS, with each name's SNI.
    served = nginx_log.read_text()
    assert "en.wikipedia.org en.wikipedia.org /wiki/Main_Page" in served
    assert "de.wikipedia.org de.wikipedia.org /wiki/Wikipedia:Hauptseite" in served
