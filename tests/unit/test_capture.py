"""Transparent capture, the pure parts: the namespace's nftables rules, the DNS proxy's table
and the captured sidecar's listeners and clusters (the golden cases ``*.sidecar-captured.*``
show whole translations)."""

from __future__ import annotations

from pathlib import Path

from exitgate import names
from exitgate.api.loader import load_text
from exitgate.capture import netns_name, netns_prefix, ruleset
from exitgate.cli.main import workload_env
from exitgate.ir import CaptureListener, DiscoveryType, DnsListener, Endpoint
from exitgate.mesh import MeshConfig
from exitgate.translate.capture import dns_table
from exitgate.translate.registry import Service, ServicePort
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot

NETNS = "/run/netns/eg-test-sleep.default"


def test_rules_redirect_tcp_and_dns_but_not_the_capture_port_itself() -> None:
    doc = ruleset()["nftables"]
    chain = doc[1]["add"]["chain"]
    assert (chain["type"], chain["hook"], chain["prio"]) == ("nat", "output", -100)
    rules = [c["add"]["rule"]["expr"] for c in doc[2:]]
    # istio-iptables' order: what is excluded returns before the redirect.
    assert rules[0][-1] == {"return": None}
    assert rules[0][0]["match"]["right"] == "127.0.0.1" and rules[0][1]["match"]["right"] == names.CAPTURE_PORT
    assert rules[1] == [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
                        {"redirect": {"port": names.CAPTURE_PORT}}]
    assert rules[2][-1] == {"redirect": {"port": names.DNS_CAPTURE_PORT}}
    assert rules[2][0]["match"]["right"] == 53


def test_namespace_names_are_per_state_directory(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert netns_prefix(a) != netns_prefix(b)
    assert netns_name(a, "sleep", "default").startswith(netns_prefix(a))
    assert netns_name(a, "sleep", "default").endswith("sleep.default")


def _svc(host: str, addresses: tuple[str, ...] = ()) -> Service:
    return Service(host, "default", DiscoveryType.STRICT_DNS,
                   (ServicePort(80, "HTTP", "http", (Endpoint(host, 80),)),), addresses=addresses)


def test_dns_table_keeps_addresses_and_allocates_stably() -> None:
    table = dict(dns_table([_svc("a.example"), _svc("b.example", ("192.0.2.7", "198.51.100.0/24")),
                            _svc("*.wild.example")]))
    assert table["b.example"] == ("192.0.2.7",)  # its own IP; a CIDR is no answer
    assert "*.wild.example" not in table  # wildcards are not answered, as Istio's DNS proxy
    assert table["a.example"][0].startswith("240.240.")
    # Adding a service never renumbers another.
    more = dict(dns_table([_svc("a.example"), _svc("c.example"), _svc("d.example")]))
    assert more["a.example"] == table["a.example"]
    assert len({v for v in more.values()}) == 3


SERVICES = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partners}
spec:
  hosts: [partners.example]
  addresses: [198.51.100.0/24]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: NONE
"""


def _captured(extra: str = "") -> tuple[Snapshot, MeshConfig]:
    loaded = load_text(SERVICES + extra, "test.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    mesh = MeshConfig()
    return Snapshot(loaded.resources, mesh), mesh


def test_captured_sidecar_has_istios_outbound_listeners() -> None:
    snap, mesh = _captured()
    pc, _ = translate_sidecar(snap, mesh.workloads[0], 15001, capture_netns=NETNS)
    assert [x.name for x in pc.listeners] == ["0.0.0.0_80"]
    assert all(not x.bind_to_port for x in pc.listeners)
    assert [x.name for x in pc.tls_passthrough_listeners] == ["0.0.0.0_443", "0.0.0.0_5432"]
    tcp = pc.tls_passthrough_listeners[1]
    assert tcp.chains[0].destination_cidrs == ("198.51.100.0/24",) and tcp.default_cluster == names.PASSTHROUGH_CLUSTER
    outbound = next(x for x in pc.capture_listeners if isinstance(x, CaptureListener))
    assert (outbound.name, outbound.port, outbound.netns) == ("virtualOutbound", 15001, NETNS)
    assert outbound.http is not None and outbound.http.route_config == names.HTTP_PROXY_ROUTE
    dns = next(x for x in pc.capture_listeners if isinstance(x, DnsListener))
    assert "httpbin.org" in dict(dns.table) and dns.port == 15053
    clusters = {c.name: c for c in pc.clusters}
    # Istio's PassthroughCluster and resolution NONE: the connection's own destination.
    assert clusters[names.PASSTHROUGH_CLUSTER].discovery is DiscoveryType.ORIGINAL_DST
    assert clusters["outbound|5432||partners.example"].discovery is DiscoveryType.ORIGINAL_DST
    # Without capture the same services give the forward proxy, resolving what is asked.
    plain, _ = translate_sidecar(snap, mesh.workloads[0], 15001)
    assert [x.name for x in plain.listeners] == ["127.0.0.1_15001"] and not plain.capture_listeners
    assert {c.name: c for c in plain.clusters}[names.PASSTHROUGH_CLUSTER].discovery is DiscoveryType.DYNAMIC_FORWARD_PROXY


def test_registry_only_closes_what_no_service_declares() -> None:
    snap, mesh = _captured("""---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""")
    pc, _ = translate_sidecar(snap, mesh.workloads[0], 15001, capture_netns=NETNS)
    outbound = next(x for x in pc.capture_listeners if isinstance(x, CaptureListener))
    assert outbound.default_cluster == names.BLACKHOLE_CLUSTER
    assert all(x.default_cluster == names.BLACKHOLE_CLUSTER for x in pc.tls_passthrough_listeners)
    assert names.PASSTHROUGH_CLUSTER not in {c.name for c in pc.clusters}


def test_exec_environment_per_mode() -> None:
    base = {"PATH": "/bin", "http_proxy": "http://elsewhere:3128", "NO_PROXY": "*"}
    captured = workload_env(base, None)
    assert captured["EXITGATE_CAPTURE"] == "netns"
    assert not {"http_proxy", "NO_PROXY"} & set(captured)
    plain = workload_env(base, 15001)
    assert plain["https_proxy"] == plain["http_proxy"] == "http://127.0.0.1:15001"
    assert plain["EXITGATE_CAPTURE"] == "proxy-env" and "NO_PROXY" not in plain
