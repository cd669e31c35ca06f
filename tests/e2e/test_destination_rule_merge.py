"""Two per-host DestinationRules on the egress gateway's host, each with its own subset, as
Istio's per-host egress tasks write them (the golden case ``destinationrule-merge``): Istio merges
DestinationRules of one host in one namespace, so both hosts go out through the gateway. Before
exitgate merged them, the second host's subset did not exist: ``503 NC cluster_not_found``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exitgate.ca import certs
from exitgate.demo.standins import DnsStandIn, NginxServer, find_nginx
from exitgate.envoy.ports import free_port

from tests.e2e.harness import Exitgate, make_mesh, start_exitgate, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

CASE = Path(__file__).parents[1] / "golden" / "cases" / "destinationrule-merge.in.yaml"
HOSTS = ("edition.cnn.com", "httpbin.org")

SERVER = """
  server {{
    listen 127.0.0.1:{p443} ssl;
    server_name {host};
    ssl_certificate server.crt;
    ssl_certificate_key server.key;
    location / {{ default_type text/plain; return 200 "hello from {host}\\n"; }}
  }}"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Exitgate]:
    root, root_key = certs.make_root("test external CA", "exitgate tests", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, HOSTS[0], list(HOSTS), key_type="ec256")
    trust = tmp_path / "trust.pem"
    trust.write_bytes(root)
    p80, p443 = free_port(), free_port()
    conf = "http {" + "".join(SERVER.format(p443=p443, host=h) for h in HOSTS) + "\n}\n"
    nginx = NginxServer(tmp_path / "nginx", conf, port=p443, files={"server.crt": leaf, "server.key": key})
    nginx.start()
    dns = DnsStandIn({h: "127.0.0.1" for h in HOSTS}).start()
    eg = None
    try:
        mesh = make_mesh(trust, dns.port, {80: p80, 443: p443}, capture="off").model_copy(update={"monitoring_port": 0})
        eg = start_exitgate(tmp_path / "state", mesh)
        yield eg
    finally:
        if eg is not None:
            eg.cp.stop()
        dns.stop()
        nginx.stop()


def test_two_per_host_destination_rules_on_the_gateway_host(world: Exitgate) -> None:
    eg = world
    eg.apply(CASE)
    for host in HOSTS:
        out = until(lambda: eg.curl(f"http://{host}/").stdout, lambda o: o.startswith("hello"))
        assert out == f"hello from {host}\n"
    log = until(eg.gateway_log, lambda t: all(f"outbound|443||{h}" in t for h in HOSTS))
    for host in HOSTS:
        assert f"outbound|443||{host}" in log
    clusters = eg.cli("proxy-config", "cluster", "sleep", "--fqdn", "istio-egressgateway", "--port", "80", check=True).stdout
    subsets = sorted(line.split()[2] for line in clusters.splitlines()[1:])
    assert subsets == ["-", "cnn", "httpbin"], clusters
    # The merged rule is the first one: proxy-config names it for every subset.
    assert all(line.split()[-1] == "egressgateway-for-cnn.default" for line in clusters.splitlines()[1:]), clusters
