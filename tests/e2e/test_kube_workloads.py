"""Kubernetes objects as the inventory, end to end: ``exitgate apply -f`` of Istio's ``sleep``
sample starts the sleep workload's sidecar (real Envoy) in a running mesh that had no workload,
``exec deploy/sleep`` sends real curl through it, and deleting the sample stops it; and the PoC
(seeds/003) with its workload and its own egress gateway declared by their Deployments and
Service (examples/poc-egress-kubernetes) instead of the mesh file, its request answered by real
nginx over TLS as jsonplaceholder.typicode.com."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from exitgate.ca import certs
from exitgate.demo.standins import DnsStandIn, find_nginx
from exitgate.demo.standins.jsonplaceholder import HOST, PLAIN_BODY_PREFIX, TODO_1, JsonPlaceholderServer
from exitgate.envoy.ports import free_port
from exitgate.mesh import DnsSettings, MeshConfig

from tests.e2e.harness import EXAMPLES, start_exitgate, until

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

SLEEP = Path(__file__).resolve().parents[1] / "unit" / "kube_cases" / "sleep.yaml"


def _site(tmp: Path) -> tuple[JsonPlaceholderServer, Path]:
    root, root_key = certs.make_root("kube test public CA", "exitgate tests", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, HOST, [HOST], key_type="ec256")
    trust = tmp / "trust.pem"
    trust.write_bytes(root)
    return JsonPlaceholderServer(tmp / "nginx", leaf, key), trust


def _alive(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists()


def test_applying_istios_sleep_sample_runs_its_sidecar_and_deleting_it_stops_it(tmp_path: Path) -> None:
    site, trust = _site(tmp_path)
    site.start()
    eg = None
    try:
        mesh = MeshConfig(system_trust_store=str(trust), gateways=[], workloads=[])
        eg = start_exitgate(tmp_path / "state", mesh)
        assert eg.cp.proxies == []
        out = eg.apply(SLEEP)
        for line in ("serviceaccount/sleep created", "service/sleep created", "deployment.apps/sleep created"):
            assert line in out, out
        [proxy] = eg.cp.proxies
        assert (proxy.record.name, proxy.record.namespace, proxy.record.role) == ("sleep", "default", "sidecar")
        # The identity is the Deployment's service account.
        assert proxy.identity == ("default", "sleep")
        assert eg.cp.wait_ready(30), eg.events[-5:]
        url = f"http://127.0.0.1:{site.http_port}/"
        got = until(lambda: eg.cli("exec", "deploy/sleep", "--", "curl", "-sS", url).stdout,
                    lambda o: o.startswith(PLAIN_BODY_PREFIX), timeout=15)
        assert got.startswith(PLAIN_BODY_PREFIX), (got, eg.events[-5:])
        # It went through the sidecar: its access log has the request.
        log = until(lambda: Path(proxy.record.log_path).read_text(errors="replace"),
                    lambda o: '"GET / HTTP/1.1" 200' in o)
        assert '"GET / HTTP/1.1" 200' in log and "PassthroughCluster" in log, log[-2000:]
        assert "deployment.apps/sleep" in eg.cli("get", "deployments", "-o", "name").stdout
        # Istio's docs' way: the pod by its label, then exec into it with the app's container.
        pod = eg.cli("get", "pod", "-l", "app=sleep", "-o", "jsonpath={.items..metadata.name}", check=True).stdout
        assert pod == "sleep"
        table = eg.cli("get", "pods", check=True).stdout
        assert table.splitlines()[1].split()[:3] == ["sleep", "1/2", "Running"], table
        got = eg.cli("exec", pod, "-c", "sleep", "--", "curl", "-sS", url).stdout
        assert got.startswith(PLAIN_BODY_PREFIX), got
        pid = proxy.record.pid
        assert _alive(pid)

        out = eg.cli("delete", "-f", str(SLEEP), check=True).stdout
        assert 'deployment.apps "sleep" deleted' in out, out
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the sleep sidecar still runs after its Deployment was deleted"
        assert eg.cp.proxies == []
        gone = eg.cli("exec", "deploy/sleep", "--", "true")
        assert gone.returncode != 0 and 'no workload "deploy/sleep"' in gone.stderr
    finally:
        if eg is not None:
            eg.cp.stop()
        site.stop()


def test_the_poc_runs_with_its_workload_and_gateway_declared_by_deployments(tmp_path: Path) -> None:
    site, trust = _site(tmp_path)
    dns = DnsStandIn({HOST: "127.0.0.1"})
    # The example as written, its gateway's container ports made free ones here.
    kube = tmp_path / "kube"
    kube.mkdir()
    for f in (EXAMPLES / "poc-egress-kubernetes").glob("*.yaml"):
        text = f.read_text()
        text = text.replace("targetPort: 8080", f"targetPort: {free_port()}")
        text = text.replace("targetPort: 8443", f"targetPort: {free_port()}")
        (kube / f.name).write_text(text)
    eg = None
    site.start()
    dns.start()
    try:
        mesh = MeshConfig(system_trust_store=str(trust), dns=DnsSettings(resolvers=[f"127.0.0.1:{dns.port}"]),
                          external_port_map={443: site.tls_port, 80: site.http_port}, gateways=[], workloads=[])
        eg = start_exitgate(tmp_path / "state", mesh)
        out = eg.apply(kube, EXAMPLES / "poc-egress")
        assert "deployment.apps/curl-egress-tst-gateway created" in out, out
        assert "deployment.apps/curl-test created" in out, out
        assert sorted((p.record.name, p.record.namespace, p.record.role) for p in eg.cp.proxies) == [
            ("curl-egress-tst-gateway", "curl-egress-tst", "router"), ("curl-test", "curl-external-tst", "sidecar")]
        assert eg.cp.wait_ready(30), eg.events[-5:]
        url = f"http://{HOST}/todos/1"
        got = until(lambda: eg.cli("exec", "deploy/curl-test", "-n", "curl-external-tst", "--", "curl", "-sS",
                                   url).stdout, lambda o: o.startswith("{"), timeout=20)
        assert json.loads(got) == TODO_1, (got, eg.events[-8:])
        # nginx saw TLS with the SNI the DestinationRule sets: the gateway originated it.
        hit = [h for h in site.hits() if h.request == "GET /todos/1 HTTP/1.1"][-1]
        assert (hit.listener, hit.sni) == ("tls", HOST)
        gateway = next(p for p in eg.cp.proxies if p.record.role == "router")
        log = until(lambda: Path(gateway.record.log_path).read_text(errors="replace"),
                    lambda o: "outbound|443||jsonplaceholder.typicode.com" in o)
        assert "outbound|443||jsonplaceholder.typicode.com" in log, log[-2000:]
        # Its identity is its Deployment's service account, which the AuthorizationPolicy admits from.
        assert gateway.identity == ("curl-egress-tst", "curl-egress-tst")
    finally:
        if eg is not None:
            eg.cp.stop()
        dns.stop()
        site.stop()


def test_the_mutual_tls_task_with_its_own_nginx_service_and_deployment(tmp_path: Path) -> None:
    """Istio's "Egress Gateways with TLS Origination", MUTUAL part, with the task's own steps for
    its server: ``create namespace mesh-external``, the nginx ConfigMap and Secrets, and its
    Service and Deployment (tests/e2e/data/my-nginx.yaml, as the task writes them) instead of
    the mesh file's ``services``. The namespace is declared without injection, so my-nginx gets
    no sidecar, as in Istio; its Service is the registry's my-nginx.mesh-external, answered by
    real nginx with ``ssl_verify_client on`` (externalPortMap says where it listens here)."""
    from tests.e2e.harness import make_mesh
    from tests.e2e.test_mtls_origination import (
        NGINX_CONF, NGINX_HOST, WELCOME, Pki, apply_task, create_client_credential, wait_status)
    from exitgate.demo.standins import NginxServer

    root, root_key = certs.make_root("example.com", "example Inc.")
    server, server_key = certs.make_leaf(root, root_key, NGINX_HOST, [NGINX_HOST], org="some organization", serial=7)
    (tmp_path / "pki").mkdir()
    pki = Pki(tmp_path / "pki", root, root_key, server, server_key, 7)
    pki.write("example.com.crt", root)
    port = free_port()
    nginx = NginxServer(tmp_path / "nginx", NGINX_CONF.format(port=port, host=NGINX_HOST), port=port,
                        files={"server.crt": server, "server.key": server_key, "ca.crt": root,
                               "html/index.html": WELCOME})
    dns = DnsStandIn({})
    eg = None
    nginx.start()
    dns.start()
    try:
        trust = tmp_path / "system-trust.pem"
        trust.write_bytes(certs.make_root("a public CA", "not example.com", key_type="ec256")[0])
        eg = start_exitgate(tmp_path / "state", make_mesh(trust, dns.port, {f"{NGINX_HOST}:443": port}))
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(port=443, host=NGINX_HOST))
        crt, key = pki.write("my-nginx.crt", server), pki.write("my-nginx.key", server_key)
        for argv in (("create", "namespace", "mesh-external"),
                     ("create", "-n", "mesh-external", "secret", "tls", "nginx-server-certs", "--key", str(key),
                      "--cert", str(crt)),
                     ("create", "-n", "mesh-external", "secret", "generic", "nginx-ca-certs",
                      f"--from-file={pki.dir / 'example.com.crt'}"),
                     ("create", "configmap", "nginx-configmap", "-n", "mesh-external", f"--from-file=nginx.conf={conf}")):
            eg.cli(*argv, check=True)
        out = eg.apply(Path(__file__).parent / "data" / "my-nginx.yaml")
        assert "service/my-nginx created" in out and "deployment.apps/my-nginx created" in out, out
        # Not injected: no proxy for my-nginx, and the pods the mesh runs are the same two.
        assert sorted(p.record.name for p in eg.cp.proxies) == ["istio-egressgateway", "sleep"]
        create_client_credential(eg, pki)
        apply_task(eg)
        out = wait_status(eg, "200")
        assert "Welcome to nginx!" in out
    finally:
        if eg is not None:
            eg.cp.stop()
        dns.stop()
        nginx.stop()
