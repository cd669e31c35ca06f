"""``exitgate demo``: Istio's "Egress Gateways with TLS Origination" (the TLS origination part),
step by step, on this machine.

It starts local stand-ins for ``edition.cnn.com`` (port 80 answers 301 to https, port 443
serves the page with a certificate from a demo CA), a DNS stand-in that resolves the name to
them, and the control plane with its sidecar and egress gateway. Then it runs the commands a
user would run, prints what they print, and checks each step. The stand-ins listen on free
unprivileged ports; the mesh file's ``externalPortMap`` sends the ServiceEntry's ports 80 and
443 there, so the demo needs no root. Everything started is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.panel import Panel

from exitgate.ca import certs
from exitgate.controlplane import ControlPlane
from exitgate.demo.standins import DnsStandIn, RedirectServer, TlsPageServer
from exitgate.envoy.ports import free_port
from exitgate.mesh import (
    DnsSettings,
    ExternalService,
    GatewayProxy,
    MeshConfig,
    ServicePortMap,
    default_egress_gateway,
)
from exitgate.runtime import StateDir

HOST = "edition.cnn.com"
NGINX_HOST = "my-nginx.mesh-external.svc.cluster.local"
WELCOME = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>exitgate demo stand-in</body>\n</html>\n"
PAGE = "<html><head><title>CNN Politics (exitgate demo stand-in)</title></head><body>politics</body></html>\n"


def examples_dir() -> Path:
    """The repository's examples/ (the demo applies Istio's YAML from there, unchanged)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "examples"
        if (candidate / "tls-origination").is_dir():
            return candidate
    raise FileNotFoundError("examples/tls-origination not found; run the demo from the exitgate repository")


def port_or_free(preferred: int) -> int:
    """Istio's container port when it is free here, otherwise any free port."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def gateway_with_free_ports() -> GatewayProxy:
    g = default_egress_gateway()
    ports = [ServicePortMap(port=p.port, target_port=port_or_free(p.target_port), name=p.name, protocol=p.protocol)
             for p in g.ports]
    return g.model_copy(update={"ports": ports})


def trust_bundle(extra_ca: bytes, path: Path) -> Path:
    """The system's CA bundle plus the demo CA: the gateway's "system trust store" in the demo."""
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    data = (system.read_bytes() if system.exists() else b"") + b"\n" + extra_ca
    path.write_bytes(data)
    return path


@dataclass
class Step:
    title: str
    argv: list[str]
    check: Callable[[str], str | None]  # returns None when the output is as expected, else why not


def expect(*needles: str) -> Callable[[str], str | None]:
    def check(out: str) -> str | None:
        missing = [n for n in needles if n not in out]
        return f"expected {', '.join(repr(m) for m in missing)} in the output" if missing else None
    return check


def run_demo(console: Console, keep_state: bool = False) -> int:
    if shutil.which("curl") is None:
        console.print("[red]the demo needs curl (apt-get install curl)[/red]")
        return 1
    work = Path(tempfile.mkdtemp(prefix="exitgate-demo-"))
    state = work / "state"
    stopped: list[Callable[[], None]] = []
    failures = 0
    try:
        examples = examples_dir()
        ex, mtls = examples / "tls-origination", examples / "mtls-origination"
        console.print(Panel.fit("exitgate demo: Egress Gateways with TLS Origination (SIMPLE and MUTUAL)\n"
                                "(Istio's task, its YAML unchanged, on this machine)", style="bold"))
        root, root_key = certs.make_root("exitgate demo external CA", "exitgate demo", key_type="ec256")
        leaf, key = certs.make_leaf(root, root_key, HOST, [HOST], key_type="ec256")
        redirect = RedirectServer("127.0.0.1").start()
        stopped.append(redirect.stop)
        page = TlsPageServer(host="127.0.0.1", cert_pem=leaf, key_pem=key, body=PAGE).start()
        stopped.append(page.stop)
        dns = DnsStandIn({HOST: "127.0.0.1"}).start()
        stopped.append(dns.stop)
        # Istio's task's certificates (its openssl commands): an example.com root, a server
        # certificate for my-nginx (with the SAN of the task's optional step), a client certificate.
        ex_root, ex_root_key = certs.make_root("example.com", "example Inc.")
        nginx_cert, nginx_key = certs.make_leaf(ex_root, ex_root_key, NGINX_HOST, [NGINX_HOST], org="some organization", serial=7)
        client_cert, client_key = certs.make_leaf(ex_root, ex_root_key, "client.example.com", [],
                                                  org="client organization", client=True, serial=1)
        files = {"example.com.crt": ex_root, "client.example.com.crt": client_cert, "client.example.com.key": client_key}
        for fname, data in files.items():
            certs.write_private(work / fname, data)
        my_nginx = TlsPageServer(host="127.0.0.1", cert_pem=nginx_cert, key_pem=nginx_key, body=WELCOME,
                                 client_ca_pem=ex_root).start()
        stopped.append(my_nginx.stop)
        console.print(f"stand-ins: {HOST}:80 -> 127.0.0.1:{redirect.port} (301 to https), "
                      f"{HOST}:443 -> 127.0.0.1:{page.port} (TLS, demo CA), DNS on 127.0.0.1:{dns.port}, "
                      f"{NGINX_HOST}:443 -> 127.0.0.1:{my_nginx.port} (mutual TLS, example.com CA)")
        mesh = MeshConfig(
            system_trust_store=str(trust_bundle(root, work / "trust.pem")),
            dns=DnsSettings(resolvers=[f"127.0.0.1:{dns.port}"]),
            external_port_map={80: redirect.port, 443: page.port},
            gateways=[gateway_with_free_ports()],
            services=[ExternalService(name="my-nginx", namespace="mesh-external",
                                      ports=[ServicePortMap(port=443, target_port=my_nginx.port, protocol="HTTPS")])],
        )
        events: list[str] = []
        cp = start_control_plane(console, state, mesh, events, stopped)
        if cp is None:
            return 1

        curl = ["exec", "sleep", "--", "curl", "-sS", "-o", "/dev/null", "-D", "-", f"http://{HOST}/politics"]
        gw_log = ["logs", "istio-egressgateway", "--tail", "1"]
        steps = [
            Step("Define a ServiceEntry for edition.cnn.com", ["apply", "-f", str(ex / "01-serviceentry.yaml")],
                 expect("serviceentry.networking.istio.io/cnn created")),
            Step("Plain HTTP reaches edition.cnn.com:80, which redirects to https",
                 curl, expect("HTTP/1.1 301 Moved Permanently", f"location: https://{HOST}/politics")),
            Step("Create the egress Gateway and the DestinationRule for sidecar -> gateway (ISTIO_MUTUAL)",
                 ["apply", "-f", str(ex / "02-gateway-and-destinationrule.yaml")],
                 expect("gateway.networking.istio.io/istio-egressgateway created",
                        "destinationrule.networking.istio.io/egressgateway-for-cnn created")),
            Step("Route through the gateway and originate TLS there",
                 ["apply", "-f", str(ex / "03-virtualservice-and-tls-origination.yaml")],
                 expect("virtualservice.networking.istio.io/direct-cnn-through-egress-gateway created",
                        "destinationrule.networking.istio.io/originate-tls-for-edition-cnn-com created")),
            Step("The same plain-HTTP request now gets the page over TLS", curl, expect("HTTP/1.1 200 OK")),
            Step("The gateway's access log has the request, sent to outbound|443||edition.cnn.com",
                 gw_log, expect('"GET /politics HTTP/2" 200', f'"{HOST}"', f"outbound|443||{HOST}")),
            Step("Delete the gateway configuration", ["delete", "-f", str(ex / "02-gateway-and-destinationrule.yaml"),
                                                      "-f", str(ex / "03-virtualservice-and-tls-origination.yaml")],
                 expect('virtualservice.networking.istio.io "direct-cnn-through-egress-gateway" deleted')),
            Step("Back to the 301", curl, expect("HTTP/1.1 301 Moved Permanently")),
            Step("Mutual TLS origination: the client credential, as a Secret in the gateway's namespace",
                 ["create", "secret", "generic", "client-credential", "-n", "istio-system",
                  f"--from-file=tls.key={work / 'client.example.com.key'}",
                  f"--from-file=tls.crt={work / 'client.example.com.crt'}",
                  f"--from-file=ca.crt={work / 'example.com.crt'}"],
                 expect("secret/client-credential created")),
            Step("Gateway, DestinationRule and VirtualService for my-nginx",
                 ["apply", "-f", str(mtls / "01-gateway-and-destinationrule.yaml"), "-f", str(mtls / "02-virtualservice.yaml")],
                 expect("virtualservice.networking.istio.io/direct-nginx-through-egress-gateway created")),
            Step("The DestinationRule that originates mutual TLS (MUTUAL, credentialName)",
                 ["apply", "-n", "istio-system", "-f", str(mtls / "03-originate-mtls.yaml")],
                 expect("destinationrule.networking.istio.io/originate-mtls-for-nginx created")),
            Step("The credential is supplied to the egress gateway and active",
                 ["proxy-config", "secret", "istio-egressgateway"],
                 expect("kubernetes://client-credential ", "kubernetes://client-credential-cacert", "ACTIVE")),
            Step("Plain HTTP from sleep reaches the mutual-TLS server",
                 ["exec", "sleep", "--", "curl", "-sS", f"http://{NGINX_HOST}"], expect("Welcome to nginx!")),
            Step("The gateway logged it", ["logs", "istio-egressgateway", "--tail", "1"],
                 expect('"GET / HTTP/2" 200', f"outbound|443||{NGINX_HOST}")),
        ]
        failures += run_steps(console, state, cp, steps, {examples: "examples/", work: ""})
        failures += report_nacks(console, events)
    finally:
        stop_all(console, stopped, work, state, keep_state)
    return verdict(console, failures)


def start_control_plane(console: Console, state: Path, mesh: MeshConfig, events: list[str],
                        stopped: list[Callable[[], None]]) -> ControlPlane | None:
    """The control plane and its proxies, running and in sync (None, said why, if not); its
    stop goes first in ``stopped``."""
    cp = ControlPlane(StateDir(state), mesh, events.append)
    stopped.insert(0, cp.stop)
    cp.start()
    threading.Thread(target=cp.run, kwargs={"poll_s": 0.1}, daemon=True).start()
    if not cp.wait_ready(30):
        console.print("[red]proxies did not become ready:[/red]\n" + "\n".join(events))
        return None
    for p in cp.proxies:
        console.print(f"proxy {p.record.name}.{p.record.namespace} ({p.record.role}) pid {p.record.pid}, "
                      f"listening on {', '.join(p.record.listen)}")
    return cp


def stop_all(console: Console, stopped: list[Callable[[], None]], work: Path, state: Path, keep_state: bool) -> None:
    """Stop what the demo started, in order, and remove its files unless asked to keep them."""
    for stop in stopped:
        stop()
    if keep_state:
        console.print(f"state kept in {state}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def verdict(console: Console, failures: int) -> int:
    console.rule()
    console.print("[green]demo passed: every step gave what it should[/green]" if failures == 0
                  else f"[red]demo failed: {failures} step(s) did not give what they should[/red]")
    return 0 if failures == 0 else 1


def run_steps(console: Console, state: Path, cp: ControlPlane, steps: list[Step],
              shorten: dict[Path, str]) -> int:
    """Run each step as the user would type it (paths shortened as ``shorten`` says), print
    what it printed, and check it; the number of steps that did not give what they should."""
    failures = 0
    for i, step in enumerate(steps, 1):
        console.rule(f"[bold]{i}. {step.title}")
        shown = "exitgate " + " ".join(a if " " not in a else repr(a) for a in step.argv)
        for path, short in shorten.items():
            shown = shown.replace(str(path) + "/", short)
        console.print(f"$ {shown}", style="cyan", soft_wrap=True, markup=False)
        if step.argv[0] in ("apply", "delete", "create"):
            out = run_cli(state, step.argv)
            wait_applied(cp)
        else:
            out, _ = retry(lambda: run_cli(state, step.argv), step.check)
        console.print(out.rstrip(), soft_wrap=True, markup=False, highlight=False)
        why = step.check(out)
        if why:
            failures += 1
            console.print(f"[red]✗ {why}[/red]")
        else:
            console.print("[green]✓[/green]")
    return failures


def report_nacks(console: Console, events: list[str]) -> int:
    """1 (a failure) if a proxy rejected configuration during the demo, else 0."""
    nacks = [e for e in events if "NACK" in e]
    if nacks:
        console.print("[red]a proxy rejected configuration:[/red]\n" + "\n".join(nacks))
    return 1 if nacks else 0


def run_cli(state: Path, argv: list[str]) -> str:
    # The state directory travels in EXITGATE_HOME, as a user's shell would set it.
    env = {**os.environ, "EXITGATE_HOME": str(state)}
    proc = subprocess.run([sys.executable, "-m", "exitgate.cli.main", *argv], capture_output=True, text=True,
                          timeout=60, env=env)
    return proc.stdout + proc.stderr


def wait_applied(cp: ControlPlane, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cp.applied_version == cp.store.version() and cp.in_sync():
            return True
        time.sleep(0.1)
    return False


def retry(action: Callable[[], str], check: Callable[[str], str | None], timeout: float = 10.0) -> tuple[str, str | None]:
    """Run until the check passes or time runs out: DNS answers and access logs (flushed every
    half second) take a moment to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        out = action()
        why = check(out)
        if why is None or time.monotonic() > deadline:
            return out, why
        time.sleep(0.3)
