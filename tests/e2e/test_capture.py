"""Transparent capture end to end (root on Linux): ``exitgate exec sleep -- CMD`` runs CMD in
sleep's own network namespace, where nftables sends every TCP connection to the sidecar's
``virtualOutbound`` and DNS to the sidecar's DNS proxy, as istio-iptables does in a pod.

Checked with real curl, Envoy and nftables: no proxy variables are set and requests still go
through the sidecar; a host name resolves to the address Istio's DNS proxy would give; a
connection made straight to an address (no name, no proxy) is still the sidecar's — passed
through under ALLOW_ANY, closed at BlackHoleCluster under REGISTRY_ONLY; nothing is left behind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitgate.capture import NetnsCapture, support
from exitgate.demo.standins import DnsStandIn
from exitgate.demo.standins.httpbin import HttpbinServer

from tests.e2e.harness import Exitgate, make_mesh, start_exitgate, until
# The ServiceEntry of Istio's "Accessing External Services" task, verbatim.
from tests.e2e.test_accessing_external_services import SERVICE_ENTRY

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not support().available, reason=f"capture unavailable: {support().reason}")]

REGISTRY_ONLY = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |-
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Exitgate, HttpbinServer]]:
    httpbin = HttpbinServer("127.0.0.1").start()
    dns = DnsStandIn({"httpbin.org": "127.0.0.1"})
    try:
        dns.start()
        trust = tmp_path / "trust.pem"
        trust.write_text("")
        eg = start_exitgate(tmp_path / "state", make_mesh(trust, dns.port, {80: httpbin.port}))
        try:
            yield eg, httpbin
        finally:
            eg.cp.stop()
        # Stopped: the workload's namespace (and its rules with it) is gone.
        assert NetnsCapture(tmp_path / "state").existing() == []
    finally:
        dns.stop()
        httpbin.stop()


def sidecar_log(eg: Exitgate) -> str:
    return Path(eg.cp.proxies[-1].record.log_path).read_text(errors="replace")


def in_sleep(eg: Exitgate, script: str) -> subprocess.CompletedProcess[str]:
    return eg.cli("exec", "sleep", "--", "sh", "-c", script)


def logged(eg: Exitgate, needle: str) -> str:
    return until(lambda: next((x for x in sidecar_log(eg).splitlines() if needle in x), ""), bool)


def test_captured_workload_goes_through_its_sidecar(world: tuple[Exitgate, HttpbinServer], tmp_path: Path) -> None:
    eg, httpbin = world
    rec = eg.cp.proxies[-1].record
    assert rec.netns, "capture is available here but the sidecar runs without it"

    # No proxy variables: the namespace's rules, not the environment, send traffic to the sidecar.
    out = in_sleep(eg, 'echo "$EXITGATE_CAPTURE ${http_proxy:-none} ${https_proxy:-none}"').stdout.split()
    assert out == ["netns", "none", "none"], out

    se = tmp_path / "se.yaml"
    se.write_text(SERVICE_ENTRY)
    eg.apply(se)
    # The DNS proxy answers the ServiceEntry's host with an auto-allocated address (240.240/16).
    resolved = until(lambda: in_sleep(eg, "getent hosts httpbin.org").stdout, lambda o: "240.240." in o)
    assert resolved.startswith("240.240."), resolved
    proc = in_sleep(eg, "curl -sS -o /dev/null -w '%{http_code}' http://httpbin.org/headers")
    assert proc.stdout == "200", proc.stdout + proc.stderr
    line = logged(eg, '"GET /headers HTTP/1.1"')
    assert "outbound|80||httpbin.org" in line and '"httpbin.org"' in line, line

    # Straight to an address, no name, proxies explicitly off: still the sidecar's connection,
    # passed through to where it was headed (ALLOW_ANY, Istio's default).
    direct = f"127.0.0.1:{httpbin.port}"
    proc = in_sleep(eg, f"curl -sS --noproxy '*' -o /dev/null -w '%{{http_code}}' http://{direct}/get")
    assert proc.stdout == "200", proc.stdout + proc.stderr
    # No listener for that port: virtualOutbound's PassthroughFilterChain, as TCP, to the
    # original destination (Envoy's %DOWNSTREAM_LOCAL_ADDRESS% in Istio's format).
    line = logged(eg, " PassthroughCluster 127.0.0.1:")
    assert f" {direct} " in line, line

    # REGISTRY_ONLY: nothing reaches httpbin. The same HTTP request gets the sidecar's 502
    # (block_all), as without capture; what is not HTTP is closed at BlackHoleCluster.
    before = len(httpbin.requests)
    cm = tmp_path / "istio.yaml"
    cm.write_text(REGISTRY_ONLY)
    eg.apply(cm)
    proc = in_sleep(eg, f"curl -sS -m 5 --noproxy '*' -o /dev/null -w '%{{http_code}}' http://{direct}/status/200")
    assert proc.stdout == "502", proc.stdout + proc.stderr
    assert "block_all" in logged(eg, '"GET /status/200 HTTP/1.1" 502')
    proc = in_sleep(eg, f"curl -sS -m 5 -k -o /dev/null -w '%{{http_code}}' https://{direct}/")
    assert proc.returncode != 0 and proc.stdout in ("", "000"), proc.stdout + proc.stderr
    assert f" {direct} " in logged(eg, " BlackHoleCluster ")
    assert len(httpbin.requests) == before
    # The registered host still answers.
    proc = in_sleep(eg, "curl -sS -o /dev/null -w '%{http_code}' http://httpbin.org/status/200")
    assert proc.stdout == "200", proc.stdout + proc.stderr
