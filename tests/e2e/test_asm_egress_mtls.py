"""Alibaba Cloud ASM's guide "egress gateway with mTLS origination" (seeds/002), end to end: its
YAML unchanged (examples/asm-egress-mtls, the endpoint address aside), real Envoy as sleep's
sidecar and as the egress gateway, real nginx as the guide's external ingress gateway (mutual
TLS, and its own policy denying the test.client certificate /status/418) in front of httpbin.

The guide's ``curl --header host:test.com $INGRESS_GATEWAY_IP/status/418`` becomes ``curl
http://test.com/status/418`` through sleep's sidecar (``exitgate exec sleep``): the same request
as far as routing goes. Each step of the guide is asserted in order, as a user would run them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from exitgate.ca import certs
from exitgate.demo.standins import DnsStandIn, find_nginx
from exitgate.demo.standins.httpbin import TEAPOT, HttpbinStandIn
from exitgate.mesh import OutboundTrafficPolicy

from tests.e2e.asm_standin import (
    HOST,
    UNREGISTERED,
    GuidePki,
    log_line,
    log_mark,
    make_asm_mesh,
    make_pki,
    start_external,
    wait_status,
)
from tests.e2e.harness import EXAMPLES, Exitgate, start_exitgate

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

ASM = EXAMPLES / "asm-egress-mtls"
GATEWAY = "istio-egressgateway"
RBAC_POLICY_DETAILS = "rbac_access_denied_matched_policy[ns[istio-system]-policy[test]-rule[0]]"


@dataclass
class World:
    eg: Exitgate
    external: HttpbinStandIn
    pki: GuidePki

    def url(self, path: str) -> str:
        return f"http://{HOST}{path}"


@contextmanager
def running(tmp_path: Path, outbound: OutboundTrafficPolicy | None = None) -> Iterator[World]:
    """The stand-ins and exitgate (sleep, other, the egress gateway), stopped on exit."""
    pki = make_pki(tmp_path / "pki")
    external = start_external(tmp_path / "nginx", pki)
    # Step 1 runs before any ServiceEntry: test.com and the unregistered host are found by DNS,
    # as they would be outside the mesh.
    dns = DnsStandIn({HOST: "127.0.0.1", UNREGISTERED: "127.0.0.1"})
    try:
        dns.start()
        # The system trust store does not hold the guide's CA: only the Secret's ca.crt may
        # verify test.com's server certificate.
        trust = tmp_path / "system-trust.pem"
        trust.write_bytes(certs.make_root("a public CA", "not test.com", key_type="ec256")[0])
        mesh = make_asm_mesh(trust, dns.port, external)
        if outbound is not None:
            mesh = mesh.model_copy(update={"outbound_traffic_policy": outbound})
        eg = start_exitgate(tmp_path / "state", mesh)
        try:
            yield World(eg, external, pki)
        finally:
            eg.cp.stop()
    finally:
        dns.stop()
        external.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with running(tmp_path) as w:
        yield w


def body(response: str) -> str:
    """The body of ``curl -i`` output (text mode has turned its CRLFs into newlines)."""
    return response.split("\n\n", 1)[1]


def step1_allow_any(w: World) -> None:
    """Before any ServiceEntry, Istio's default ALLOW_ANY lets sleep reach test.com through the
    sidecar's PassthroughCluster. No ServiceEntry port maps here, so the URL names the
    stand-in's real HTTP port."""
    p1 = w.external.http_port
    out = wait_status(w.eg, f"http://{HOST}:{p1}/status/418", "418")
    assert TEAPOT.strip() in out
    line = log_line(w.eg, "sleep", '"GET /status/418 HTTP/1.1" 418')
    assert "PassthroughCluster" in line, line
    # Any host at all goes out under ALLOW_ANY.
    out = wait_status(w.eg, f"http://{UNREGISTERED}:{p1}/", "200")
    assert "httpbin" in out
    assert "PassthroughCluster" in log_line(w.eg, "sleep", f'"{UNREGISTERED}:{p1}"')


def step2_registry_only_and_serviceentry(w: World) -> None:
    p1 = w.external.http_port
    out = w.eg.apply(ASM / "00-registry-only.yaml")
    assert "configmap/istio created" in out
    # REGISTRY_ONLY: what no ServiceEntry declares is answered 502 by the sidecar (block_all).
    mark = log_mark(w.eg, "sleep")
    wait_status(w.eg, f"http://{UNREGISTERED}:{p1}/", "502")
    assert "block_all" in log_line(w.eg, "sleep", f'"{UNREGISTERED}:{p1}"', " 502 ", since=mark)
    wait_status(w.eg, f"http://{HOST}:{p1}/status/418", "502")
    wait_status(w.eg, w.url("/status/418"), "502")
    out = w.eg.apply(ASM / "01-serviceentry.yaml")
    assert "serviceentry.networking.istio.io/test-com created" in out
    # The guide's request works again: test.com:80 is registered (STATIC, 127.0.0.1).
    mark = log_mark(w.eg, "sleep")
    assert "-=[ teapot ]=-" in wait_status(w.eg, w.url("/status/418"), "418")
    line = log_line(w.eg, "sleep", '"GET /status/418 HTTP/1.1" 418', since=mark)
    assert "outbound|80||test.com" in line and f"127.0.0.1:{p1}" in line, line
    # Still blocked: the unregistered host.
    wait_status(w.eg, f"http://{UNREGISTERED}:{p1}/", "502")


def step3_through_the_gateway(w: World) -> None:
    out = w.eg.apply(ASM / "02-gateway.yaml", ASM / "03-virtualservice.yaml")
    assert "gateway.networking.istio.io/egress-gateway created" in out
    assert "virtualservice.networking.istio.io/egressgateway-vs created" in out
    assert "-=[ teapot ]=-" in wait_status(w.eg, w.url("/status/418"), "418")
    line = log_line(w.eg, GATEWAY, '"GET /status/418 HTTP/2" 418')
    # The sidecar sent it to the gateway (port 80, ISTIO_MUTUAL).
    assert "outbound|80||istio-egressgateway.istio-system.svc.cluster.local" in log_line(
        w.eg, "sleep", '"GET /status/418 HTTP/1.1" 418', "egressgateway")
    assert "outbound|80||test.com" in line, line
    assert f"127.0.0.1:{w.external.http_port}" in line, line  # plaintext to the external port 80
    tail = w.eg.cli("logs", GATEWAY, "--tail", "1", check=True).stdout
    assert "outbound|80||test.com" in tail


def step4_mutual_tls(w: World) -> None:
    out = w.eg.apply(ASM / "04-virtualservice-443.yaml")
    assert "virtualservice.networking.istio.io/egressgateway-vs configured" in out
    out = w.eg.cli("create", "secret", "generic", "test.client", "-n", "istio-system",
                   f"--from-file=tls.key={w.pki.client_key}", f"--from-file=tls.crt={w.pki.client_cert}",
                   f"--from-file=ca.crt={w.pki.ca}", check=True).stdout
    assert "secret/test.client created" in out
    out = w.eg.apply(ASM / "05-destinationrule-mtls.yaml")
    assert "destinationrule.networking.istio.io/originate-mtls-for-test-com created" in out
    # The guide's "curl ... /status/200 -I": 200 over mutual TLS.
    mark = log_mark(w.eg, GATEWAY)
    proc = w.eg.cli("exec", "sleep", "--", "curl", "-sS", "-I", w.url("/status/200"))
    assert proc.stdout.startswith("HTTP/1.1 200 OK"), proc.stdout + proc.stderr
    assert "server: envoy" in proc.stdout.lower()
    line = log_line(w.eg, GATEWAY, '"HEAD /status/200 HTTP/2" 200', since=mark)
    assert "outbound|443||test.com" in line, line
    assert f"127.0.0.1:{w.external.https_port}" in line, line  # the external mTLS port (443)
    # The external server's own policy denies this client certificate /status/418.
    out = wait_status(w.eg, w.url("/status/418"), "403")
    assert out.endswith("RBAC: access denied"), out
    line = log_line(w.eg, GATEWAY, '"GET /status/418 HTTP/2" 403')
    assert "via_upstream" in line and "outbound|443||test.com" in line, line  # not the egress gateway's RBAC
    # And the certificate it saw is the Secret's (the stand-in passes it on, as Istio's gateways do).
    headers = json.loads(body(wait_status(w.eg, w.url("/headers"), "200")))["headers"]
    assert headers["Host"] == HOST and headers["X-Forwarded-Client-Cert"] == 'Subject="CN=test.client"', headers


def step5_authorization_policy(w: World) -> None:
    out = w.eg.apply(ASM / "06-authorizationpolicy.yaml")
    assert "authorizationpolicy.security.istio.io/test created" in out
    mark = log_mark(w.eg, GATEWAY)
    out = wait_status(w.eg, w.url("/headers"), "403")
    assert out.endswith("RBAC: access denied"), out
    line = log_line(w.eg, GATEWAY, '"GET /headers HTTP/2" 403', since=mark)
    assert RBAC_POLICY_DETAILS in line, line
    # Denied at the gateway: the route names its cluster, but no upstream host was contacted.
    assert '"-" outbound|443||test.com' in line and f"127.0.0.1:{w.external.https_port}" not in line, line
    assert wait_status(w.eg, w.url("/status/200"), "200") is not None
    # Another identity (spiffe://cluster.local/ns/other/sa/other) is not denied.
    mark = log_mark(w.eg, GATEWAY)
    out = wait_status(w.eg, w.url("/headers"), "200", workload="other")
    assert '"Host": "test.com"' in out
    # ... and it did go through the egress gateway, out over mutual TLS (Istio's log format names
    # no principal, so the gateway's line cannot say who it was).
    assert "outbound|443||test.com" in log_line(w.eg, GATEWAY, '"GET /headers HTTP/2" 200', since=mark)
    assert "istio-egressgateway" in log_line(w.eg, "other", '"GET /headers HTTP/1.1" 200')
    # Deleting the policy gives sleep /headers back.
    out = w.eg.delete(ASM / "06-authorizationpolicy.yaml")
    assert 'authorizationpolicy.security.istio.io "test" deleted' in out
    assert '"Host": "test.com"' in wait_status(w.eg, w.url("/headers"), "200")


def test_asm_guide_step_by_step(world: World) -> None:
    step1_allow_any(world)
    step2_registry_only_and_serviceentry(world)
    step3_through_the_gateway(world)
    step4_mutual_tls(world)
    step5_authorization_policy(world)
    assert not any("NACK" in e for e in world.eg.events), [e for e in world.eg.events if "NACK" in e]



def test_deleting_the_configmap_restores_allow_any(world: World) -> None:
    """The ConfigMap overrides the mesh file only while it is applied, as editing Istio's does."""
    url = f"http://{UNREGISTERED}:{world.external.http_port}/"
    world.eg.apply(ASM / "00-registry-only.yaml")
    wait_status(world.eg, url, "502")
    assert 'configmap "istio" deleted' in world.eg.delete(ASM / "00-registry-only.yaml")
    wait_status(world.eg, url, "200")


def test_registry_only_from_the_mesh_file(tmp_path: Path) -> None:
    """The other way to set it: ``outboundTrafficPolicy: {mode: REGISTRY_ONLY}`` in the mesh file."""
    with running(tmp_path, OutboundTrafficPolicy(mode="REGISTRY_ONLY")) as w:
        wait_status(w.eg, f"http://{UNREGISTERED}:{w.external.http_port}/", "502")
        w.eg.apply(ASM / "01-serviceentry.yaml")
        assert "-=[ teapot ]=-" in wait_status(w.eg, w.url("/status/418"), "418")


def test_demo_asm_passes_and_cleans_up() -> None:
    """``exitgate demo asm`` walks the same guide and leaves no Envoy or nginx running."""
    proc = subprocess.run([sys.executable, "-m", "exitgate.cli.main", "demo", "asm"], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "demo passed" in proc.stdout
    for expected in ("-=[ teapot ]=-", "PassthroughCluster", "block_all", "outbound|80||test.com",
                     "outbound|443||test.com", "RBAC: access denied", RBAC_POLICY_DETAILS):
        assert expected in proc.stdout, expected
    # The demo's Envoys and nginx all run from its temporary directory (their command lines name
    # it); other tests' processes, which may be running meanwhile, do not.
    left = subprocess.run(["pgrep", "-af", "exitgate-demo-asm-"], capture_output=True, text=True).stdout
    assert left.strip() == "", f"the demo left processes running:\n{left}"
