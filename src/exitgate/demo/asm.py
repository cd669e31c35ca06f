"""``exitgate demo asm``: Alibaba Cloud ASM's guide "egress gateway with mTLS origination"
(seeds/002), step by step, on this machine, its YAML unchanged (examples/asm-egress-mtls; the
ServiceEntry's endpoint is 127.0.0.1 instead of ``<ingress-gateway-ip>``).

The guide's external service is another mesh's ingress gateway in front of httpbin, which
requires a client certificate and itself denies the ``test.client`` certificate
``/status/418``. ``HttpbinStandIn`` plays it with real nginx; a DNS stand-in resolves
``test.com`` (and a host no ServiceEntry declares, ``unregistered.test``) to 127.0.0.1. The mesh
has the guide's ``sleep`` and a workload ``other`` of another identity, to show that the
gateway's DENY policy names one identity only. The stand-in listens on free unprivileged ports;
the mesh file's ``externalPortMap`` sends the ServiceEntry's ports 80 and 443 there. Before the
ServiceEntry exists no port is mapped, so the first requests name the stand-in's real port.

The guide's ``curl --header host:test.com $INGRESS_GATEWAY_IP/status/418`` becomes
``exitgate exec sleep -- curl http://test.com/status/418``: the same request as far as routing
goes. Everything started is stopped at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from exitgate.ca import certs
from exitgate.demo.scenario import (
    Step,
    examples_dir,
    expect,
    gateway_with_free_ports,
    report_nacks,
    run_steps,
    start_control_plane,
    stop_all,
    verdict,
)
from exitgate.demo.standins import DnsStandIn, find_nginx
from exitgate.demo.standins.httpbin import RBAC_DENIED, HttpbinStandIn
from exitgate.mesh import DnsSettings, MeshConfig, WorkloadProxy

HOST = "test.com"
UNREGISTERED = "unregistered.test"
GATEWAY_RBAC = "rbac_access_denied_matched_policy[ns[istio-system]-policy[test]-rule[0]]"


def _guide_certificates(work: Path) -> tuple[bytes, bytes, bytes]:
    """The prerequisite tutorial's certificates: a CA, test.com's server certificate, and the
    ``test.client`` client certificate, written under the file names of the guide's
    ``kubectl create secret`` command. Returns (CA, server certificate, server key)."""
    ca, ca_key = certs.make_root("test.com root CA", "exitgate demo")
    server, server_key = certs.make_leaf(ca, ca_key, HOST, [HOST])
    client, client_key = certs.make_leaf(ca, ca_key, "test.client", [], client=True)
    for name, data in {"cacert.pem": ca, "clientcert.pem": client, "client.key.pem": client_key}.items():
        certs.write_private(work / name, data)
    return ca, server, server_key


def _steps(asm: Path, work: Path, http_port: int, https_port: int) -> list[Step]:
    def curl(*args: str, workload: str = "sleep") -> list[str]:
        return ["exec", workload, "--", "curl", "-sS", *args]

    def apply(*names: str) -> list[str]:
        return ["apply", *[a for n in names for a in ("-f", str(asm / n))]]

    gw_log = ["logs", "istio-egressgateway", "--tail", "1"]
    teapot = expect("-=[ teapot ]=-")
    direct = f"http://{HOST}:{http_port}/status/418"
    unregistered = f"http://{UNREGISTERED}:{http_port}/"
    return [
        Step("Step 1: sleep reaches test.com (no ServiceEntry yet: ALLOW_ANY, the stand-in's real port)",
             curl(direct), teapot),
        Step("... through the sidecar's PassthroughCluster", ["logs", "sleep", "--tail", "1"],
             expect('"GET /status/418 HTTP/1.1" 418', "PassthroughCluster")),
        Step("Under ALLOW_ANY any host goes out, registered or not",
             curl("-o", "/dev/null", "-w", "%{http_code}", unregistered), expect("200")),
        Step("Step 2: REGISTRY_ONLY, in Istio's mesh ConfigMap", apply("00-registry-only.yaml"),
             expect("configmap/istio created")),
        Step("An unregistered host now gets 502 from the sidecar",
             curl("-o", "/dev/null", "-w", "%{http_code}", unregistered), expect("502")),
        Step("... from route block_all", ["logs", "sleep", "--tail", "1"], expect(" 502 ", "block_all")),
        Step("Register test.com (STATIC, endpoint 127.0.0.1)", apply("01-serviceentry.yaml"),
             expect("serviceentry.networking.istio.io/test-com created")),
        Step("The guide's request works again", curl(f"http://{HOST}/status/418"), teapot),
        Step("Step 3: the Gateway (port 80, ISTIO_MUTUAL) and the VirtualService through it",
             apply("02-gateway.yaml", "03-virtualservice.yaml"),
             expect("gateway.networking.istio.io/egress-gateway created",
                    "virtualservice.networking.istio.io/egressgateway-vs created")),
        Step("Same request, now through the egress gateway", curl(f"http://{HOST}/status/418"), teapot),
        Step("The gateway's access log: outbound|80||test.com", gw_log,
             expect('"GET /status/418 HTTP/2" 418', "outbound|80||test.com", f"127.0.0.1:{http_port}")),
        Step("Step 4a: the gateway sends to test.com port 443", apply("04-virtualservice-443.yaml"),
             expect("virtualservice.networking.istio.io/egressgateway-vs configured")),
        Step("Step 4b: the client certificate as Secret test.client, in the gateway's namespace",
             ["create", "secret", "generic", "test.client", "-n", "istio-system",
              f"--from-file=tls.key={work / 'client.key.pem'}", f"--from-file=tls.crt={work / 'clientcert.pem'}",
              f"--from-file=ca.crt={work / 'cacert.pem'}"],
             expect("secret/test.client created")),
        Step("Step 4c: originate mutual TLS (MUTUAL, credentialName test.client, sni test.com)",
             apply("05-destinationrule-mtls.yaml"),
             expect("destinationrule.networking.istio.io/originate-mtls-for-test-com created")),
        Step("A path the client certificate may use", curl("-I", f"http://{HOST}/status/200"),
             expect("HTTP/1.1 200 OK", "server: envoy")),
        Step("The gateway connected to the mutual-TLS port", gw_log,
             expect('"HEAD /status/200 HTTP/2" 200', "outbound|443||test.com", f"127.0.0.1:{https_port}")),
        Step("A path the external gateway denies this client certificate", curl(f"http://{HOST}/status/418"),
             expect(RBAC_DENIED)),
        Step("... denied by the external server (via_upstream), not by the egress gateway", gw_log,
             expect('"GET /status/418 HTTP/2" 403 - via_upstream', "outbound|443||test.com")),
        Step("Step 5: deny sleep test.com/headers at the egress gateway", apply("06-authorizationpolicy.yaml"),
             expect("authorizationpolicy.security.istio.io/test created")),
        Step("sleep's /headers is denied", curl(f"http://{HOST}/headers"), expect(RBAC_DENIED)),
        Step("... by the gateway's policy test, rule 0", gw_log, expect('"GET /headers HTTP/2" 403', GATEWAY_RBAC)),
        Step("sleep's other paths still work", curl("-I", f"http://{HOST}/status/200"), expect("HTTP/1.1 200 OK")),
        Step("Another identity (other/sa/other) may read /headers", curl(f"http://{HOST}/headers", workload="other"),
             expect('"Host": "test.com"', '"X-Forwarded-Client-Cert": "Subject=\\"CN=test.client\\""')),
        Step("Delete the policy", ["delete", "-f", str(asm / "06-authorizationpolicy.yaml")],
             expect('authorizationpolicy.security.istio.io "test" deleted')),
        Step("sleep's /headers works again", curl(f"http://{HOST}/headers"), expect('"Host": "test.com"')),
    ]


def run_demo(console: Console, keep_state: bool = False) -> int:
    if shutil.which("curl") is None or find_nginx() is None:
        console.print("[red]the demo needs curl and nginx (apt-get install curl nginx)[/red]")
        return 1
    work = Path(tempfile.mkdtemp(prefix="exitgate-demo-asm-"))
    state = work / "state"
    stopped: list[Callable[[], None]] = []
    failures = 0
    try:
        examples = examples_dir()
        asm = examples / "asm-egress-mtls"
        console.print(Panel.fit("exitgate demo asm: Alibaba Cloud ASM, egress gateway with mTLS origination\n"
                                "(the guide's YAML unchanged, on this machine)", style="bold"))
        ca, server, server_key = _guide_certificates(work)
        external = HttpbinStandIn(conf_dir=work / "external-gateway", server_cert_pem=server,
                                  server_key_pem=server_key, client_ca_pem=ca).start()
        stopped.append(external.stop)
        dns = DnsStandIn({HOST: "127.0.0.1", UNREGISTERED: "127.0.0.1"}).start()
        stopped.append(dns.stop)
        console.print(f"stand-ins: the external ingress gateway (nginx, pid {external.nginx_pid}) in front of "
                      f"httpbin: {HOST}:80 -> 127.0.0.1:{external.http_port} (HTTP), "
                      f"{HOST}:443 -> 127.0.0.1:{external.https_port} (mutual TLS; denies CN=test.client "
                      f"/status/418); DNS on 127.0.0.1:{dns.port} ({HOST}, {UNREGISTERED})")
        mesh = MeshConfig(
            dns=DnsSettings(resolvers=[f"127.0.0.1:{dns.port}"]),
            external_port_map={80: external.http_port, 443: external.https_port},
            gateways=[gateway_with_free_ports()],
            workloads=[WorkloadProxy(name="sleep", service_account="sleep", labels={"app": "sleep"}),
                       WorkloadProxy(name="other", namespace="other", service_account="other",
                                     labels={"app": "other"})],
        )
        events: list[str] = []
        cp = start_control_plane(console, state, mesh, events, stopped)
        if cp is None:
            return 1
        steps = _steps(asm, work, external.http_port, external.https_port)
        failures += run_steps(console, state, cp, steps, {examples: "examples/", work: ""})
        failures += report_nacks(console, events)
    finally:
        stop_all(console, stopped, work, state, keep_state)
    return verdict(console, failures)
