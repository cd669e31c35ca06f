"""The sidecar's listeners under transparent capture, as Istio builds a pod's outbound side:

* ``virtualOutbound`` (127.0.0.1:15001 in the workload's namespace) restores the original
  destination and hands the connection to the listener for its port; with none, HTTP (sniffed)
  gets the same route table, so a request to an unlisted port routes and is refused exactly as
  without capture (Istio would pass it through as TCP), and anything else goes by Istio's
  ``PassthroughFilterChain`` to ``PassthroughCluster`` (ALLOW_ANY, the original destination) or
  ``BlackHoleCluster`` (REGISTRY_ONLY: the connection is closed);
* ``0.0.0.0_PORT`` for each HTTP port: the same route table as the forward proxy, so both modes
  route and refuse alike;
* ``0.0.0.0_PORT`` for each TLS/TCP port: a chain per SNI (``tls`` routes or the service),
  per ServiceEntry address (TCP), the catch-all last;
* the DNS proxy (15053): the hosts the sidecar sees answer with their ServiceEntry address or an
  address Istio would auto-allocate (240.240.0.0/16); other names are resolved upstream.

Pure: the inputs are what ``translate.sidecar`` already worked out for the forward proxy.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from exitgate import names
from exitgate.ir import CaptureListener, DnsListener, HttpListener, SniChain, TlsPassthroughListener, WeightedCluster
from exitgate.translate.registry import Service

# Istio's auto-allocation range for ServiceEntries without addresses (class E, never routed).
AUTO_ALLOCATE = ipaddress.ip_network("240.240.0.0/16")
# Protocols whose connections are told apart by the SNI of the client's own TLS.
SNI_PROTOCOLS = ("HTTPS", "TLS")


@dataclass(frozen=True)
class Tunnel:
    """Where the sidecar sends a non-HTTP connection for ``host:port``: a CONNECT tunnel
    without capture, a filter chain with it."""

    host: str
    port: int
    protocol: str
    addresses: tuple[str, ...]
    clusters: tuple[WeightedCluster, ...]


@dataclass(frozen=True)
class CaptureSettings:
    netns: str
    outbound_mode: str
    access_log: bool
    resolvers: tuple[tuple[str, int], ...]


def _chain_key(t: Tunnel) -> tuple[str, ...]:
    if t.protocol in SNI_PROTOCOLS:
        return ("sni", t.host)
    return ("cidr", *t.addresses) if t.addresses else ("port",)


def capture_listeners(settings: CaptureSettings, http_listener: HttpListener, http_ports: Iterable[int],
                      tunnels: Sequence[Tunnel], services: Sequence[Service]
                      ) -> tuple[list[HttpListener], list[TlsPassthroughListener], list[CaptureListener | DnsListener]]:
    catch_all = names.PASSTHROUGH_CLUSTER if settings.outbound_mode == "ALLOW_ANY" else names.BLACKHOLE_CLUSTER
    http = sorted(set(http_ports))
    http_listeners = [
        HttpListener(name=names.listener_name("0.0.0.0", p), address="0.0.0.0", port=p,
                     route_config=http_listener.route_config, stat_prefix=f"outbound_0.0.0.0_{p}",
                     access_log=settings.access_log, dynamic_forward_proxy=http_listener.dynamic_forward_proxy,
                     fault_injection=http_listener.fault_injection, bind_to_port=False)
        for p in http]
    by_port: dict[int, dict[tuple[str, ...], SniChain]] = {}
    for t in tunnels:
        if t.port in http:
            continue  # an HTTP service claimed the port first; Istio keeps one protocol a port
        chains = by_port.setdefault(t.port, {})
        key = _chain_key(t)
        if key in chains:
            continue  # the first service or route to claim a match keeps it, in Istio's order
        sni = (t.host,) if key[0] == "sni" else ()
        chains[key] = SniChain(names.virtual_host_name(t.host, t.port), sni, t.clusters,
                               destination_cidrs=t.addresses if key[0] == "cidr" else ())
    tcp_listeners = [
        TlsPassthroughListener(name=names.listener_name("0.0.0.0", port), address="0.0.0.0", port=port,
                               stat_prefix=f"outbound_0.0.0.0_{port}", chains=tuple(chains.values()),
                               access_log=settings.access_log, bind_to_port=False, default_cluster=catch_all)
        for port, chains in sorted(by_port.items())]
    captured: list[CaptureListener | DnsListener] = [
        CaptureListener(names.VIRTUAL_OUTBOUND, "127.0.0.1", names.CAPTURE_PORT, settings.netns, catch_all,
                        settings.access_log,
                        http=replace(http_listener, name=names.VIRTUAL_OUTBOUND, stat_prefix="outbound_virtualOutbound",
                                     connect=False, access_log=settings.access_log)),
        DnsListener(names.DNS_CAPTURE_LISTENER, "127.0.0.1", names.DNS_CAPTURE_PORT, settings.netns, dns_table(services),
                    settings.resolvers),
    ]
    return http_listeners, tcp_listeners, captured


def _plain_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def dns_table(services: Sequence[Service]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each host the sidecar sees (wildcards aside, as Istio's DNS proxy) and its addresses: the
    ServiceEntry's own IPs, else one from 240.240.0.0/16 chosen by the host's hash, so that
    adding a service never renumbers another (the next free one on a collision, in host order)."""
    table: dict[str, tuple[str, ...]] = {}
    taken: set[int] = set()
    pending: list[str] = []
    for svc in services:
        if "*" in svc.host or svc.host in table:
            continue
        ips = tuple(a for a in svc.addresses if _plain_ip(a))
        if ips:
            table[svc.host] = ips
        else:
            table[svc.host] = ()
            pending.append(svc.host)
    size = AUTO_ALLOCATE.num_addresses - 2
    for host in sorted(pending):
        slot = int.from_bytes(hashlib.sha256(host.encode()).digest()[:4], "big") % size
        while slot in taken:
            slot = (slot + 1) % size
        taken.add(slot)
        table[host] = (str(AUTO_ALLOCATE.network_address + 1 + slot),)
    return tuple(sorted(table.items()))
