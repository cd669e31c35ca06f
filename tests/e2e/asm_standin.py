"""What the ASM guide's end-to-end test (seeds/002) needs beside ``harness``: the guide's
certificates (a CA, test.com's server certificate, the ``test.client`` client certificate), the
external ingress gateway stand-in in front of httpbin, and a mesh with a second workload of
another identity."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from exitgate.ca import certs
from exitgate.demo.standins.httpbin import HttpbinStandIn
from exitgate.mesh import DnsSettings, MeshConfig, WorkloadProxy

from tests.e2e.harness import Exitgate, make_gateway, until

HOST = "test.com"
UNREGISTERED = "unregistered.test"


@dataclass(frozen=True)
class GuidePki:
    """The files of the guide's ``kubectl create secret generic test.client`` command."""

    ca: Path  # cacert.pem
    client_cert: Path  # clientcert.pem
    client_key: Path  # client.key.pem
    ca_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes


def make_pki(directory: Path) -> GuidePki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = certs.make_root("test.com root CA", "exitgate test")
    server, server_key = certs.make_leaf(ca, ca_key, HOST, [HOST])
    client, client_key = certs.make_leaf(ca, ca_key, "test.client", [], client=True)
    paths = {"cacert.pem": ca, "clientcert.pem": client, "client.key.pem": client_key}
    for name, data in paths.items():
        certs.write_private(directory / name, data)
    return GuidePki(directory / "cacert.pem", directory / "clientcert.pem", directory / "client.key.pem",
                    ca, server, server_key)


def start_external(directory: Path, pki: GuidePki) -> HttpbinStandIn:
    return HttpbinStandIn(conf_dir=directory, server_cert_pem=pki.server_cert_pem,
                          server_key_pem=pki.server_key_pem, client_ca_pem=pki.ca_pem).start()


def make_asm_mesh(trust_store: Path, dns_port: int, external: HttpbinStandIn) -> MeshConfig:
    """Istio's defaults (ALLOW_ANY) with the guide's sleep and a workload ``other`` of another
    identity; the ServiceEntry's ports 80/443 go to the stand-in's real ports."""
    return MeshConfig(
        system_trust_store=str(trust_store),
        dns=DnsSettings(resolvers=[f"127.0.0.1:{dns_port}"]),
        external_port_map={80: external.http_port, 443: external.https_port},
        gateways=[make_gateway()],
        workloads=[WorkloadProxy(name="sleep", service_account="sleep", labels={"app": "sleep"}),
                   WorkloadProxy(name="other", namespace="other", service_account="other", labels={"app": "other"})],
    )


def request(eg: Exitgate, url: str, workload: str = "sleep", *extra: str) -> tuple[str, str]:
    """(status code, headers and body) of ``curl -i URL`` run as ``workload``."""
    proc = eg.cli("exec", workload, "--", "curl", "-sS", "-i", *extra, url)
    m = re.match(r"HTTP/\S+ (\d+)", proc.stdout)
    return (m.group(1) if m else "000"), proc.stdout + proc.stderr


def wait_status(eg: Exitgate, url: str, code: str, workload: str = "sleep", timeout: float = 15.0) -> str:
    """The response once it has status ``code`` (DNS and new configuration take a moment)."""
    out = until(lambda: "|".join(request(eg, url, workload)), lambda o: o.startswith(code + "|"), timeout=timeout)
    assert out.startswith(code + "|"), f"expected {code} from {url} as {workload}, got: {out[:600]}\nevents: {eg.events[-5:]}"
    return out.split("|", 1)[1]


def proxy_log(eg: Exitgate, name: str) -> str:
    proxy = next(p for p in eg.cp.proxies if p.record.name == name)
    return Path(proxy.record.log_path).read_text(errors="replace")


def log_mark(eg: Exitgate, proxy: str) -> int:
    """Where ``proxy``'s log ends now: ``log_line(..., since=mark)`` then sees only what follows."""
    return len(proxy_log(eg, proxy))


def log_line(eg: Exitgate, proxy: str, *needles: str, since: int = 0) -> str:
    """The last access-log line of ``proxy`` after ``since`` holding every needle (logs are
    flushed in batches, so it waits for it)."""
    def find() -> str:
        lines = [x for x in proxy_log(eg, proxy)[since:].splitlines() if all(n in x for n in needles)]
        return lines[-1] if lines else ""

    line = until(find, bool)
    assert line, f"no {proxy} log line with {needles!r}:\n{proxy_log(eg, proxy)[-2500:]}"
    return line
