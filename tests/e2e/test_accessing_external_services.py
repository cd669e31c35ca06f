"""Istio's task "Accessing External Services", its part "Manage traffic to external services",
end to end with its YAML unchanged: a ServiceEntry for httpbin.org and a VirtualService with a
3 s ``timeout``; ``curl http://httpbin.org/delay/5`` from sleep then answers 504 after about 3 s
(Envoy's ``UT`` response flag, upstream request timeout, in the sidecar's access log), and 200
after 5 s once the VirtualService is gone.

httpbin.org is the stand-in ``HttpbinServer`` on a free loopback port: a DNS stand-in answers
httpbin.org with 127.0.0.1 and the mesh's ``externalPortMap`` sends port 80 there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitgate.demo.standins import DnsStandIn
from exitgate.demo.standins.httpbin import HttpbinServer

from tests.e2e.harness import Exitgate, make_mesh, start_exitgate, until

pytestmark = pytest.mark.e2e

# The task's YAML, verbatim (istio.io, tasks/traffic-management/egress/egress-control).
SERVICE_ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: httpbin-ext
spec:
  hosts:
  - httpbin.org
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
  location: MESH_EXTERNAL
"""

VIRTUAL_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin-ext
spec:
  hosts:
    - httpbin.org
  http:
  - timeout: 3s
    route:
      - destination:
          host: httpbin.org
        weight: 100
"""

# curl's -w as the task writes it: the status code alone.
CURL = ("-o", "/dev/null", "-w", "%{http_code}\n", "http://httpbin.org/delay/5")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Exitgate, HttpbinServer, Path, Path]]:
    httpbin = HttpbinServer("127.0.0.1").start()
    dns = DnsStandIn({"httpbin.org": "127.0.0.1"})
    try:
        dns.start()
        trust = tmp_path / "trust.pem"
        trust.write_text("")
        se, vs = tmp_path / "serviceentry.yaml", tmp_path / "virtualservice.yaml"
        se.write_text(SERVICE_ENTRY)
        vs.write_text(VIRTUAL_SERVICE)
        eg = start_exitgate(tmp_path / "state", make_mesh(trust, dns.port, {80: httpbin.port}))
        try:
            yield eg, httpbin, se, vs
        finally:
            eg.cp.stop()
    finally:
        dns.stop()
        httpbin.stop()


def sidecar_log(eg: Exitgate) -> str:
    # Gateways are planned first, then the workloads: sleep's sidecar is the last proxy.
    return Path(eg.cp.proxies[-1].record.log_path).read_text(errors="replace")


def timed_curl(eg: Exitgate) -> tuple[str, float]:
    start = time.monotonic()
    proc = eg.curl(*CURL)
    return proc.stdout.strip(), time.monotonic() - start


def test_timeout_on_an_external_service(world: tuple[Exitgate, HttpbinServer, Path, Path]) -> None:
    eg, httpbin, se, vs = world
    eg.apply(se, vs)
    code, took = timed_curl(eg)
    # The task: "504 (Gateway Timeout) ... after 3 seconds", though httpbin would answer after 5.
    assert code == "504", code
    assert 2.9 <= took < 4.9, took
    line = until(lambda: next((x for x in sidecar_log(eg).splitlines() if "/delay/5" in x), ""), bool)
    assert '"GET /delay/5 HTTP/1.1" 504 UT ' in line, line
    assert "outbound|80||httpbin.org" in line

    # Without the VirtualService the request waits for httpbin's answer.
    eg.delete(vs)
    code, took = timed_curl(eg)
    assert code == "200", code
    assert took >= 4.9, took
    assert any(r.path.endswith("/delay/5") for r in httpbin.requests)
