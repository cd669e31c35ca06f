"""The ServiceEntry kind: the spec, its ports and endpoints (WorkloadEntry), and Istio's rules
relating hosts, addresses, ports, resolution and endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field

from exitgate.api.base import (
    UNIX_PREFIX,
    IPOrCIDR,
    Issue,
    Path,
    PortName,
    Spec,
    Where,
    export_to_issues,
    host_problem,
    is_ip,
    is_partial_wildcard,
    label_problem,
    labels_issues,
    unix_address_problem,
    warning,
)
from exitgate.api.networking.common import (
    ISTIO_HTTP,
    TCP_PROTOCOLS,
    TLS_PROTOCOLS,
    Protocol,
    ServiceEntryHost,
    WorkloadSelector,
    _port_problem,
    partial_wildcard_unsupported,
)


class ServicePort(Spec):
    number: int = Field(ge=1, le=65535)
    protocol: Protocol | None = None
    name: PortName
    # Where the endpoints receive this port's traffic (0 or unset: the port's number); an
    # endpoint's own ports map still wins, as in Istio.
    target_port: int | None = Field(default=None, ge=0, le=65535)


class WorkloadEntry(Spec):
    address: str | None = None
    ports: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    network: str | None = None
    locality: str | None = None
    weight: int | None = Field(default=None, ge=0, le=4294967295)
    service_account: str | None = None

    UNSUPPORTED = frozenset({"network", "locality", "weight", "service_account", "labels"})

    def issues(self, where: Where) -> Iterable[Issue]:
        out = labels_issues(self.labels, ("labels",))
        for name, number in (self.ports or {}).items():
            problem = label_problem(name, "port name") or _port_problem(number)
            if problem:
                out.append(Issue(("ports", name), problem))
        return out


class ServiceEntrySpec(Spec):
    hosts: list[ServiceEntryHost] = Field(min_length=1)
    addresses: list[IPOrCIDR] | None = None
    ports: list[ServicePort] | None = None
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] | None = None
    endpoints: list[WorkloadEntry] | None = None
    workload_selector: WorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None

    UNSUPPORTED = frozenset({"workload_selector", "subject_alt_names"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        return [u for i, h in enumerate(self.hosts) for u in partial_wildcard_unsupported(("hosts", i), h)]

    def issues(self, where: Where) -> Iterable[Issue]:
        """Istio's ``ValidateServiceEntry``."""
        out: list[Issue] = []
        resolution = self.resolution or "NONE"
        ports = self.ports or []
        endpoints = self.endpoints or []
        if self.workload_selector is not None and self.endpoints is not None:
            out.append(Issue(("endpoints",), "only one of workloadSelector or endpoints can be set"))
        if resolution != "DYNAMIC_DNS":
            for i, host in enumerate(self.hosts):
                if is_partial_wildcard(host):
                    out.append(warning(("hosts", i), f"partial wildcard {host!r} is not allowed with resolution "
                                                     f"{resolution} (only DYNAMIC_DNS takes it); write the wildcard "
                                                     f"as a whole first label, like *.example.com"))
        for i, address in enumerate(self.addresses or []):
            if "/" in address and resolution not in ("NONE", "STATIC"):
                out.append(Issue(("addresses", i), f"CIDR address {address!r} is allowed only with resolution NONE "
                                                   f"or STATIC"))
        names: dict[str, int] = {}
        numbers: dict[int, int] = {}
        for i, port in enumerate(ports):
            if port.name in names:
                out.append(Issue(("ports", i, "name"), f"port name {port.name!r} is already used by ports[{names[port.name]}]; "
                                                       f"give each port its own name"))
            names.setdefault(port.name, i)
            if port.number in numbers:
                out.append(Issue(("ports", i, "number"), f"port {port.number} is already defined by "
                                                         f"ports[{numbers[port.number]}]; each port number once"))
            numbers.setdefault(port.number, i)
            # Istio allocates addresses itself (PILOT_ENABLE_IP_AUTOALLOCATE, on by default) to
            # every ServiceEntry but those with resolution NONE.
            if not self.addresses and resolution == "NONE" and port.protocol in (None, "TCP"):
                out.append(warning(("ports", i, "protocol") if port.protocol else ("ports", i),
                                   f"port {port.number} serves TCP{'' if port.protocol else ' (no protocol set)'} "
                                   f"without addresses: with resolution NONE no address is allocated, so it would "
                                   f"take all TCP traffic to port {port.number}; set addresses"))
        if resolution == "NONE":
            # Istio's CRD refuses endpoints with NONE whenever the field is there, even [].
            if self.endpoints is not None:
                out.append(Issue(("endpoints",), "resolution NONE takes no endpoints (traffic goes to the address the "
                                                 "client asked for); remove them, or use resolution STATIC or DNS"))
            if self.workload_selector is not None:
                out.append(warning(("workloadSelector",), "workloadSelector has no effect with resolution NONE"))
        elif resolution == "STATIC":
            # No endpoints is valid: the service has none (requests to it fail), as in Istio.
            for i, e in enumerate(endpoints):
                out.extend(self._endpoint_issues(i, e, names, static=True))
        elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
            if not endpoints:
                for i, host in enumerate(self.hosts):
                    if host_problem(host, wildcard=False):
                        out.append(Issue(("hosts", i), f"with resolution {resolution} and no endpoints each host is "
                                                       f"looked up in DNS, so {host!r} must be a fully qualified domain "
                                                       f"name without wildcards; add endpoints or use resolution NONE"))
                        break  # Istio reports the first one
            if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
                out.append(Issue(("endpoints",), "resolution DNS_ROUND_ROBIN takes at most one endpoint"))
            for i, e in enumerate(endpoints):
                out.extend(self._endpoint_issues(i, e, names, static=False))
            if self.addresses and len(self.hosts) > 1:
                tcp = next((i for i, p in enumerate(ports) if p.protocol in TCP_PROTOCOLS | TLS_PROTOCOLS), None)
                if tcp is not None:
                    out.append(warning(("ports", tcp, "protocol"), "a ServiceEntry with addresses and a TCP port should "
                                                                   "have one host: the address names one service"))
        elif resolution == "DYNAMIC_DNS":
            out.extend(self._dynamic_dns_issues())
        if resolution != "NONE" and len(self.hosts) > 1:
            for i, port in enumerate(ports):
                if port.protocol not in ISTIO_HTTP | TLS_PROTOCOLS:
                    out.append(Issue(("ports", i, "protocol") if port.protocol else ("ports", i),
                                     f"several hosts share port {port.number}, which works only for HTTP and TLS "
                                     f"protocols (requests are told apart by Host or SNI); set protocol HTTP, HTTPS or "
                                     f"TLS, or use one ServiceEntry per host"))
                    break
        out.extend(export_to_issues(self.export_to, where.namespace, ("exportTo",), service_entry=True))
        return out

    def _dynamic_dns_issues(self) -> list[Issue]:
        """Istio's rules for resolution DYNAMIC_DNS: each connection goes to the host it asks for
        (Envoy's dynamic forward proxy), so the hosts are wildcards, and the protocol must carry
        the host (Host header or SNI)."""
        out = []
        for i, host in enumerate(self.hosts):
            if not host.startswith("*"):
                out.append(Issue(("hosts", i), f"with resolution DYNAMIC_DNS each host must be a wildcard, like "
                                               f"*.example.com, not {host!r}; use resolution DNS for one host"))
        if self.addresses:
            out.append(Issue(("addresses",), "resolution DYNAMIC_DNS takes no addresses: the destination is found "
                                             "from the host each request asks for"))
        if self.endpoints:
            out.append(Issue(("endpoints",), "resolution DYNAMIC_DNS takes no endpoints: the host each request asks "
                                             "for is resolved then"))
        for i, port in enumerate(self.ports or []):
            # Istio takes HTTP, HTTP2, GRPC and TLS. exitgate takes HTTPS too, deliberately: its
            # gateway originates TLS to such a port (examples/wildcard-origination).
            if port.protocol not in ("HTTP", "HTTP2", "GRPC", "TLS", "HTTPS"):
                out.append(Issue(("ports", i, "protocol") if port.protocol else ("ports", i),
                                 f"resolution DYNAMIC_DNS needs the host from each request, so port {port.number} "
                                 f"must be HTTP, HTTP2, GRPC, TLS or HTTPS, not {port.protocol or 'unset'}"))
        return out

    def _endpoint_issues(self, i: int, e: WorkloadEntry, port_names: dict[str, int], *, static: bool) -> list[Issue]:
        out: list[Issue] = []
        at: Path = ("endpoints", i)
        address = e.address or ""
        if not address:
            if static and e.network:
                out.append(warning(at, f"endpoint has no address, only network {e.network!r}"))
            else:
                out.append(Issue(at, "an endpoint needs an address"))
        elif address.startswith(UNIX_PREFIX):
            problem = unix_address_problem(address[len(UNIX_PREFIX):]) if static else \
                "a unix:// endpoint needs resolution STATIC"
            if problem:
                out.append(Issue(at + ("address",), problem))
            if e.ports:
                out.append(Issue(at + ("ports",), f"unix endpoint {address} takes no ports"))
            if static and len(self.ports or []) != 1:
                out.append(Issue(at + ("address",), "a unix endpoint needs exactly one service port"))
        elif not is_ip(address):
            if static:
                out.append(Issue(at + ("address",), f"with resolution STATIC an endpoint address must be an IP address "
                                                    f"(or unix:///path), not {address!r}; use resolution DNS to send "
                                                    f"to a host name"))
            elif host_problem(address, wildcard=False):
                out.append(Issue(at + ("address",), f"endpoint address {address!r} is not a valid IP address or fully "
                                                    f"qualified domain name"))
        for name in e.ports or {}:
            if name not in port_names:
                out.append(Issue(at + ("ports", name), f"endpoint port {name!r} is not a port name of this "
                                                       f"ServiceEntry ({', '.join(port_names) or 'it has none'})"))
        return out
