"""``exitgate demo poc``: the "Istio Egress Gateway Proof of Concept" (seeds/003), step by step,
its YAML from examples/poc-egress, on this machine.

The PoC's egress gateway ``curl-egress-tst`` lives in its own namespace (``curl-egress-tst``,
service ``curl-egress-tst.curl-egress-tst.svc.cluster.local``, labels ``istio:
curl-egress-tst-gateway``); its workload ``curl-test`` (``app: curl-test``) in
``curl-external-tst`` sends plain HTTP to ``http://jsonplaceholder.typicode.com/todos/1``; the
sidecar carries it over ISTIO_MUTUAL to the gateway, which originates TLS (SIMPLE, SNI
jsonplaceholder.typicode.com). Its Sidecar makes ``curl-test`` (only) REGISTRY_ONLY; its
AuthorizationPolicy lets only namespace ``curl-external-tst`` through the gateway.

Two workloads the PoC does not have show what those two select: ``other-curl`` in the same
namespace without ``app: curl-test``, and ``intruder`` in namespace ``other-ns``. nginx stands
in for jsonplaceholder (its certificate from a demo CA added to the gateway's system trust
store) and for a site no ServiceEntry declares (``unregistered.test``); a DNS stand-in resolves
both names to it. Everything started is stopped at the end.
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
    port_or_free,
    report_nacks,
    run_steps,
    start_control_plane,
    stop_all,
    trust_bundle,
    verdict,
)
from exitgate.demo.standins import DnsStandIn, find_nginx
from exitgate.demo.standins.jsonplaceholder import HOST, PLAIN_BODY_PREFIX, JsonPlaceholderServer
from exitgate.mesh import DnsSettings, MeshConfig, ServicePortMap, WorkloadProxy, load_mesh

UNREGISTERED = "unregistered.test"
GATEWAY = "curl-egress-tst"
WORKLOAD = "curl-test"
# Not in the PoC: a neighbour the Sidecar's workloadSelector does not pick, and a caller from a
# namespace the AuthorizationPolicy does not allow.
NEIGHBOUR = WorkloadProxy(name="other-curl", namespace="curl-external-tst", service_account="other-curl",
                          labels={"app": "other"})
INTRUDER = WorkloadProxy(name="intruder", namespace="other-ns", service_account="intruder",
                         labels={"app": "intruder"})
TO_GATEWAY = "outbound|80|jsonplaceholder|curl-egress-tst.curl-egress-tst.svc.cluster.local"
TO_EXTERNAL = f"outbound|443||{HOST}"


def mesh_file() -> Path:
    """examples/mesh-poc-egress.yaml: beside the example, since ``apply -f DIR`` reads every
    YAML file in DIR as Istio configuration."""
    return examples_dir() / "mesh-poc-egress.yaml"


def poc_mesh(base: MeshConfig, trust_store: Path, dns_port: int, site: JsonPlaceholderServer,
             target_port: Callable[[int], int]) -> MeshConfig:
    """The example's mesh file made to run here: the stand-ins' trust store, DNS and ports, a
    gateway container port from ``target_port`` (given Istio's, it returns one free here), and
    the two extra workloads."""
    gateways = [g.model_copy(update={"ports": [ServicePortMap(port=p.port, target_port=target_port(p.target_port),
                                                                name=p.name, protocol=p.protocol) for p in g.ports]})
                for g in base.gateways]
    return base.model_copy(update={
        "system_trust_store": str(trust_store),
        "dns": DnsSettings(resolvers=[f"127.0.0.1:{dns_port}"]),
        # The ServiceEntry's ports 443 and 80 are where nginx really listens.
        "external_port_map": {443: site.tls_port, 80: site.http_port},
        "gateways": gateways,
        "workloads": [*base.workloads, NEIGHBOUR, INTRUDER],
    })


def run_demo(console: Console, keep_state: bool = False) -> int:
    if shutil.which("curl") is None or find_nginx() is None:
        console.print("[red]the PoC demo needs curl and nginx (apt-get install curl nginx)[/red]")
        return 1
    work = Path(tempfile.mkdtemp(prefix="exitgate-demo-poc-"))
    state = work / "state"
    stopped: list[Callable[[], None]] = []
    failures = 0
    try:
        examples = examples_dir()
        poc = examples / "poc-egress"
        base, problems = load_mesh(mesh_file())
        if base is None:
            console.print("[red]the example's mesh file does not load:[/red]\n" + "\n".join(map(str, problems)))
            return 1
        console.print(Panel.fit("exitgate demo poc: the Istio Egress Gateway Proof of Concept\n"
                                "(its own gateway in its own namespace, a Sidecar, an AuthorizationPolicy)",
                                style="bold"))
        # A demo CA plays the public CA that signs jsonplaceholder's certificate: added to the
        # system bundle, the gateway's SIMPLE origination verifies the stand-in like the real site.
        root, root_key = certs.make_root("exitgate demo public CA", "exitgate demo", key_type="ec256")
        leaf, key = certs.make_leaf(root, root_key, HOST, [HOST], key_type="ec256")
        site = JsonPlaceholderServer(work / "nginx", leaf, key).start()
        stopped.append(site.stop)
        dns = DnsStandIn({HOST: "127.0.0.1", UNREGISTERED: "127.0.0.1"}).start()
        stopped.append(dns.stop)
        console.print(f"stand-ins (nginx pid {site.pid}): {HOST}:443 -> 127.0.0.1:{site.tls_port} (TLS, demo CA), "
                      f"{HOST}:80 and {UNREGISTERED}:{site.http_port} -> 127.0.0.1:{site.http_port} (plain HTTP), "
                      f"DNS on 127.0.0.1:{dns.port}")
        mesh = poc_mesh(base, trust_bundle(root, work / "trust.pem"), dns.port, site, port_or_free)
        events: list[str] = []
        cp = start_control_plane(console, state, mesh, events, stopped)
        if cp is None:
            return 1

        url = f"http://{HOST}/todos/1"
        other = f"http://{UNREGISTERED}:{site.http_port}/"

        def curl(workload: str, target: str, *args: str) -> list[str]:
            return ["exec", workload, "--", "curl", "-sS", *args, target]

        def tail(proxy: str) -> list[str]:
            return ["logs", proxy, "--tail", "1"]

        routing = [poc / f for f in ("gateway.yaml", "destintionrule.yaml",
                                     "virtualservice-workload.yaml", "virtualservice-egress-gw.yaml")]
        steps = [
            Step("Declare jsonplaceholder.typicode.com (ServiceEntry, ports 80 and 443)",
                 ["apply", "-f", str(poc / "serviceentry.yaml")],
                 expect("serviceentry.networking.istio.io/jsonplaceholder created")),
            Step("No gateway yet: curl-test's sidecar sends it straight out",
                 curl(WORKLOAD, url), expect('"title": "delectus aut autem"')),
            Step("The sidecar sent it to the external service's port 80 itself",
                 tail(WORKLOAD), expect('"GET /todos/1 HTTP/1.1" 200', f"outbound|80||{HOST}")),
            Step("The gateway, the routes through it, and TLS origination there",
                 ["apply", *[a for f in routing for a in ("-f", str(f))]],
                 expect("gateway.networking.istio.io/curl-egress-tst-gateway created",
                        "destinationrule.networking.istio.io/curl-egress-tst-gateway created",
                        "destinationrule.networking.istio.io/originate-tls-for-jsonplaceholder created",
                        "virtualservice.networking.istio.io/jsonplaceholder-via-egress created",
                        "virtualservice.networking.istio.io/jsonplaceholder-from-egress created")),
            Step("Now it arrives over TLS, SNI jsonplaceholder.typicode.com (echoed)",
                 curl(WORKLOAD, url, "-D", "-"),
                 expect("HTTP/1.1 200 OK", f"x-standin-sni: {HOST}", '"userId": 1')),
            Step("curl-test's sidecar sent it to the gateway's subset over mutual TLS",
                 tail(WORKLOAD), expect('"GET /todos/1 HTTP/1.1" 200', TO_GATEWAY)),
            Step("The gateway, in namespace curl-egress-tst, originated TLS to port 443",
                 tail(GATEWAY), expect('"GET /todos/1 HTTP/2" 200', f'"{HOST}"', TO_EXTERNAL)),
            Step("Mesh default ALLOW_ANY: curl-test reaches an undeclared host",
                 curl(WORKLOAD, other, "-D", "-"), expect("HTTP/1.1 200 OK", PLAIN_BODY_PREFIX + UNREGISTERED)),
            Step("The PoC's Sidecar: REGISTRY_ONLY for app: curl-test",
                 ["apply", "-f", str(poc / "sidecar.yaml")], expect("sidecar.networking.istio.io/sidecar created")),
            Step("Now curl-test gets 502 for it", curl(WORKLOAD, other, "-D", "-"), expect("HTTP/1.1 502 Bad Gateway")),
            Step("Its sidecar's catch-all refused it (block_all)", tail(WORKLOAD), expect('"GET / HTTP/1.1" 502', "block_all")),
            Step("other-curl, same namespace but not app: curl-test, keeps ALLOW_ANY",
                 curl(NEIGHBOUR.name, other, "-D", "-"), expect("HTTP/1.1 200 OK", PLAIN_BODY_PREFIX + UNREGISTERED)),
            Step("...through its sidecar's PassthroughCluster", tail(NEIGHBOUR.name),
                 expect('"GET / HTTP/1.1" 200', "PassthroughCluster")),
            Step("No AuthorizationPolicy yet: intruder (other-ns) uses the gateway",
                 curl(INTRUDER.name, url), expect('"title": "delectus aut autem"')),
            Step("The AuthorizationPolicy: ALLOW from namespace curl-external-tst",
                 ["apply", "-f", str(poc / "authorization-policy.yaml")],
                 expect("authorizationpolicy.security.istio.io/allow-curl-external-tst created")),
            Step("curl-test (ns/curl-external-tst/sa/curl-test) is allowed",
                 curl(WORKLOAD, url), expect('"title": "delectus aut autem"')),
            Step("intruder (ns/other-ns/sa/intruder) is refused: 403",
                 curl(INTRUDER.name, url, "-D", "-"), expect("HTTP/1.1 403 Forbidden", "RBAC: access denied")),
            Step("The gateway logged the denial: no ALLOW policy matched",
                 tail(GATEWAY), expect('"GET /todos/1 HTTP/2" 403', "rbac_access_denied_matched_policy[none]")),
            Step("Delete the AuthorizationPolicy", ["delete", "-f", str(poc / "authorization-policy.yaml")],
                 expect('authorizationpolicy.security.istio.io "allow-curl-external-tst" deleted')),
            Step("The policy was what denied: intruder gets through again",
                 curl(INTRUDER.name, url), expect('"title": "delectus aut autem"')),
        ]
        failures += run_steps(console, state, cp, steps, {examples: "examples/"})
        failures += report_nacks(console, events)
    finally:
        stop_all(console, stopped, work, state, keep_state)
    return verdict(console, failures)
