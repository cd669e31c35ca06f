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
    label_problem,
    labels_issues,
    unix_address_problem,
    warning,
)
from exitgate.api.networking.common import (
    ISTIO_HTTP,
    TLS_PROTOCOLS,
    Protocol,
    ServiceEntryHost,
    WorkloadSelector,
    _port_problem,
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

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        resolution = self.resolution or "NONE"
        ports = self.ports or []
        if self.workload_selector is not None and self.endpoints is not None:
            out.append(Issue(("endpoints",), "only one of workloadSelector or endpoints can be set"))
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
        endpoints = self.endpoints or []
        if resolution == "NONE" and endpoints:
            out.append(Issue(("endpoints",), "resolution NONE takes no endpoints (traffic goes to the address the client "
                                             "asked for); remove them, or use resolution STATIC or DNS"))
        elif resolution == "STATIC":
            if not endpoints and self.workload_selector is None:
                out.append(Issue(("resolution",), "resolution STATIC needs endpoints: list the IP addresses to send to, "
                                                  "or use resolution DNS"))
            for i, e in enumerate(endpoints):
                out.extend(self._endpoint_issues(i, e, names, static=True))
        elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
            if not endpoints:
                for i, host in enumerate(self.hosts):
                    if host_problem(host, wildcard=False):
                        out.append(Issue(("hosts", i), f"with resolution {resolution} and no endpoints each host is "
                                                       f"looked up in DNS, so {host!r} must be a fully qualified domain "
                                                       f"name without wildcards; add endpoints or use resolution NONE"))
            if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
                out.append(Issue(("endpoints",), "resolution DNS_ROUND_ROBIN takes at most one endpoint"))
            for i, e in enumerate(endpoints):
                out.extend(self._endpoint_issues(i, e, names, static=False))
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
