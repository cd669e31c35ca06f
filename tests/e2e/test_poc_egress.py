"""The "Istio Egress Gateway Proof of Concept" (seeds/003), its YAML as in examples/poc-egress,
end to end on real Envoy processes, real curl and real nginx as jsonplaceholder.typicode.com.

The PoC's own egress gateway ``curl-egress-tst`` in namespace ``curl-egress-tst`` (the mesh file
examples/mesh-poc-egress.yaml), its workload ``curl-test`` in ``curl-external-tst``, and two more
workloads the PoC does not have, to show what its Sidecar and AuthorizationPolicy select:
``other-curl`` (same namespace, not ``app: curl-test``) and ``intruder`` (another namespace).

The checks run in order against one running mesh (starting four Envoys and nginx per check
would triple the time on two cores); a check that changes the configuration puts it back.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exitgate.ca import certs
from exitgate.demo.poc import (
    GATEWAY,
    INTRUDER,
    NEIGHBOUR,
    TO_EXTERNAL,
    TO_GATEWAY,
    UNREGISTERED,
    WORKLOAD,
    mesh_file,
    poc_mesh,
)
from exitgate.demo.standins import DnsStandIn, find_nginx
from exitgate.demo.standins.jsonplaceholder import HOST, PLAIN_BODY_PREFIX, TODO_1, JsonPlaceholderServer
from exitgate.envoy.ports import free_port
from exitgate.mesh import load_mesh

from tests.e2e.harness import EXAMPLES, Exitgate, start_exitgate, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

POC = EXAMPLES / "poc-egress"
URL = f"http://{HOST}/todos/1"


@dataclass
class Poc:
    """The running mesh and nginx, with the few things the checks do to them."""

    eg: Exitgate
    site: JsonPlaceholderServer

    def curl(self, workload: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.eg.cli("exec", workload, "--", "curl", "-sS", *args)

    def code(self, workload: str, url: str) -> str:
        return self.curl(workload, "-o", "/dev/null", "-w", "%{http_code}", url).stdout

    def wait_code(self, workload: str, url: str, code: str) -> None:
        got = until(lambda: self.code(workload, url), lambda o: o == code, timeout=15)
        assert got == code, f"{workload} -> {url}: expected {code}, got {got}\nevents: {self.eg.events[-5:]}"

    def log(self, proxy: str) -> str:
        rec = next(p.record for p in self.eg.cp.proxies if p.record.name == proxy)
        return Path(rec.log_path).read_text(errors="replace")

    def log_line(self, proxy: str, *needles: str) -> str:
        """The last access-log line of ``proxy`` with every needle (waiting for the flush)."""
        def lines(text: str) -> list[str]:
            return [x for x in text.splitlines() if all(n in x for n in needles)]
        text = until(lambda: self.log(proxy), lambda o: bool(lines(o)))
        found = lines(text)
        assert found, f"no {proxy} log line with {needles}:\n{text[-3000:]}"
        return found[-1]


@pytest.fixture(scope="module")
def poc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Poc]:
    tmp = tmp_path_factory.mktemp("poc")
    # A demo CA stands in for the public CA that signs jsonplaceholder's certificate; the
    # gateway's system trust store is that CA alone, so nothing else could verify.
    root, root_key = certs.make_root("poc test public CA", "exitgate tests", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, HOST, [HOST], key_type="ec256")
    trust = tmp / "trust.pem"
    trust.write_bytes(root)
    site = JsonPlaceholderServer(tmp / "nginx", leaf, key)
    # No ServiceEntry declares UNREGISTERED: it resolves to nginx, whose plain-HTTP port answers it.
    dns = DnsStandIn({HOST: "127.0.0.1", UNREGISTERED: "127.0.0.1"})
    eg: Exitgate | None = None
    try:
        site.start()
        dns.start()
        # The example's mesh file, made to run here (stand-ins, DNS, trust store), with the two
        # extra workloads; every gateway port free (another test may be running Envoys too).
        base, problems = load_mesh(mesh_file())
        assert base is not None and problems == [], problems
        assert mesh_file() == EXAMPLES / "mesh-poc-egress.yaml"
        eg = start_exitgate(tmp / "state", poc_mesh(base, trust, dns.port, site, lambda _: free_port()))
        out = eg.apply(POC)
        for created in ("serviceentry.networking.istio.io/jsonplaceholder",
                        "gateway.networking.istio.io/curl-egress-tst-gateway",
                        "destinationrule.networking.istio.io/curl-egress-tst-gateway",
                        "destinationrule.networking.istio.io/originate-tls-for-jsonplaceholder",
                        "virtualservice.networking.istio.io/jsonplaceholder-via-egress",
                        "virtualservice.networking.istio.io/jsonplaceholder-from-egress",
                        "authorizationpolicy.security.istio.io/allow-curl-external-tst",
                        "sidecar.networking.istio.io/sidecar"):
            assert f"{created} created" in out, out
        yield Poc(eg, site)
    finally:
        if eg is not None:
            eg.cp.stop()
        dns.stop()
        site.stop()
    assert eg is not None
    for p in eg.cp.proxies:
        assert p.record.pid is not None
        assert not Path(f"/proc/{p.record.pid}").exists(), f"{p.record.name} still running"


def test_curl_test_reaches_jsonplaceholder_through_its_own_egress_gateway(poc: Poc) -> None:
    """1. Plain HTTP from curl-test -> its sidecar -> ISTIO_MUTUAL -> gateway curl-egress-tst
    (namespace curl-egress-tst) -> SIMPLE TLS with SNI jsonplaceholder.typicode.com -> nginx."""
    poc.wait_code(WORKLOAD, URL, "200")
    out = poc.curl(WORKLOAD, URL)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == TODO_1

    # nginx's side: the request came over TLS, with the SNI the DestinationRule sets.
    hit = [h for h in poc.site.hits() if h.request == "GET /todos/1 HTTP/1.1"][-1]
    assert (hit.listener, hit.sni, hit.host, hit.status) == ("tls", HOST, HOST, 200)
    assert hit.tls.startswith("TLSv1.")

    # The sidecar sent it to the gateway's subset; the gateway to the TLS-originating cluster.
    sidecar = poc.log_line(WORKLOAD, '"GET /todos/1 HTTP/1.1" 200', TO_GATEWAY)
    assert f'"{HOST}"' in sidecar
    gw = poc.log_line(GATEWAY, '"GET /todos/1 HTTP/2" 200', TO_EXTERNAL)
    assert f'"{HOST}"' in gw
    assert "outbound|443||jsonplaceholder.typicode.com" in poc.eg.cli("logs", GATEWAY, "--tail", "5").stdout

    # The identities the AuthorizationPolicy reads: each proxy's SPIFFE certificate.
    admin = {p.record.name: p.record.admin_port for p in poc.eg.cp.proxies}
    certs_json = urllib.request.urlopen(f"http://127.0.0.1:{admin[WORKLOAD]}/certs", timeout=5).read().decode()
    assert "spiffe://cluster.local/ns/curl-external-tst/sa/curl-test" in certs_json
    certs_json = urllib.request.urlopen(f"http://127.0.0.1:{admin[GATEWAY]}/certs", timeout=5).read().decode()
    assert "spiffe://cluster.local/ns/curl-egress-tst/sa/curl-egress-tst" in certs_json


def test_the_sidecar_resource_makes_only_curl_test_registry_only(poc: Poc) -> None:
    """2. The Sidecar (workloadSelector app: curl-test, REGISTRY_ONLY): curl-test cannot reach a
    host no service declares (502, block_all); other-curl, in the same namespace without that
    label, keeps the mesh's ALLOW_ANY and reaches it through PassthroughCluster."""
    url = f"http://{UNREGISTERED}:{poc.site.http_port}/"
    seen_before = len([h for h in poc.site.hits() if h.host == UNREGISTERED])

    poc.wait_code(WORKLOAD, url, "502")
    line = poc.log_line(WORKLOAD, '"GET / HTTP/1.1" 502', UNREGISTERED)
    assert "block_all" in line, line
    assert len([h for h in poc.site.hits() if h.host == UNREGISTERED]) == seen_before  # it never left

    poc.wait_code(NEIGHBOUR.name, url, "200")
    assert poc.curl(NEIGHBOUR.name, url).stdout == f"{PLAIN_BODY_PREFIX}{UNREGISTERED}\n"
    line = poc.log_line(NEIGHBOUR.name, '"GET / HTTP/1.1" 200', UNREGISTERED)
    assert "PassthroughCluster" in line, line
    assert [h for h in poc.site.hits() if h.host == UNREGISTERED][-1].listener == "plain"

    # REGISTRY_ONLY keeps what the registry has: curl-test's route to the gateway still works.
    poc.wait_code(WORKLOAD, URL, "200")


def _intruder_denied(poc: Poc) -> None:
    poc.wait_code(INTRUDER.name, URL, "403")
    out = poc.curl(INTRUDER.name, "-i", URL).stdout
    assert re.match(r"HTTP/1\.1 403", out), out
    assert out.endswith("RBAC: access denied"), out
    line = poc.log_line(GATEWAY, '"GET /todos/1 HTTP/2" 403', "rbac_access_denied_matched_policy[none]")
    assert f'"{HOST}"' in line, line


def test_the_authorization_policy_admits_only_namespace_curl_external_tst(poc: Poc) -> None:
    """3. ALLOW from namespace curl-external-tst at the gateway: curl-test gets the JSON;
    intruder (namespace other-ns) takes the same route (the PoC's mesh VirtualService is exported
    to every namespace) and the gateway answers 403 RBAC: access denied."""
    poc.wait_code(WORKLOAD, URL, "200")
    _intruder_denied(poc)
    # The intruder's sidecar did route it to the gateway: the gateway, not the sidecar, refused.
    line = poc.log_line(INTRUDER.name, '"GET /todos/1 HTTP/1.1" 403', TO_GATEWAY)
    assert "via_upstream" in line, line


def test_without_the_authorization_policy_the_intruder_gets_through(poc: Poc) -> None:
    """4. The policy is what denies: deleted, the intruder is served; applied again, denied."""
    out = poc.eg.delete(POC / "authorization-policy.yaml")
    assert 'authorizationpolicy.security.istio.io "allow-curl-external-tst" deleted' in out, out
    try:
        poc.wait_code(INTRUDER.name, URL, "200")
        assert json.loads(poc.curl(INTRUDER.name, URL).stdout) == TODO_1
        poc.log_line(GATEWAY, '"GET /todos/1 HTTP/2" 200', TO_EXTERNAL)
    finally:
        out = poc.eg.apply(POC / "authorization-policy.yaml")
    assert "authorizationpolicy.security.istio.io/allow-curl-external-tst created" in out, out
    _intruder_denied(poc)
    poc.wait_code(WORKLOAD, URL, "200")
