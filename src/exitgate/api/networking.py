"""Istio ``networking.istio.io`` resources (v1alpha3, v1beta1, v1): ServiceEntry, Gateway,
VirtualService, DestinationRule, as typed, immutable models, with Istio's validation rules
(``pkg/config/validation``).

Field names follow Istio's API (camelCase in YAML). Every field Istio defines is accepted so that
Istio's YAML parses; the ones exitgate does not act on yet are listed in ``UNSUPPORTED`` and
reported by the loader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from exitgate.api.base import (
    UNIX_PREFIX,
    Duration,
    IPOrCIDR,
    Issue,
    Path,
    PortName,
    Spec,
    SubsetName,
    Where,
    checked,
    export_to_issues,
    host_problem,
    is_dns_label,
    is_ip,
    label_problem,
    labels_issues,
    selector_issues,
    unix_address_problem,
    warning,
)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


# Istio parses protocol names case-insensitively ("http" is HTTP).
Protocol = Annotated[
    Literal["HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "HTTP_PROXY", "MONGO", "TCP", "TLS", "MYSQL", "REDIS",
            "UDP"],
    BeforeValidator(_upper),
]
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
# Istio's protocol.IsHTTP() and IsTLS().
ISTIO_HTTP = HTTP_PROTOCOLS | {"HTTP_PROXY"}
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})

PORT_RANGE = "port numbers are 1-65535"


def _a(protocol: str) -> str:
    return "an" if protocol.startswith(("HTTP", "MYSQL")) else "a"


def _port_problem(n: int) -> str | None:
    return None if 1 <= n <= 65535 else f"port number {n} is out of range: {PORT_RANGE}"


# --- hosts -------------------------------------------------------------------------------------


def _service_entry_host(host: str) -> str | None:
    if host == "*":
        return "a ServiceEntry host cannot be '*' alone; name the hosts, like *.example.com or api.example.com"
    return host_problem(host)


def _destination_host(host: str) -> str | None:
    if host == "*":
        return "a destination host cannot be '*'; name the service, like api.example.com"
    return host_problem(host)


def _gateway_host_part(host: str, *, gateway: bool) -> str | None:
    """Istio's ``validateSidecarOrGatewayHostnamePart``."""
    if host != "*" and "." not in host:
        return (f"short name {host!r} is not allowed here: use the fully qualified name "
                f"(like reviews.default.svc.cluster.local), a wildcard like *.example.com, or '*'")
    problem = host_problem(host)
    if problem and not (gateway and is_ip(host)):
        return problem
    return None


def gateway_host_problem(value: str) -> str | None:
    """A Gateway server host: ``host`` or ``namespace/host``, namespace '*', '.' or a name."""
    ns, slash, host = value.partition("/")
    if not slash:
        return _gateway_host_part(value, gateway=True)
    if not ns or not host:
        return f"{value!r}: the namespace and the host of 'namespace/host' must not be empty"
    if ns not in ("*", ".") and not is_dns_label(ns):
        return f"invalid namespace {ns!r} in {value!r}: use '*', '.' or a namespace name"
    return _gateway_host_part(host, gateway=True)


def sidecar_host_problem(value: str) -> str | None:
    """A Sidecar egress host: ``namespace/host`` with namespace '*', '.', '~' or a name."""
    ns, slash, host = value.partition("/")
    if not slash:
        return (f"{value!r} must be of the form namespace/host: './{value}' (this namespace), '*/{value}' (any "
                f"namespace) or 'ns/{value}'")
    if not ns or not host:
        return f"{value!r}: the namespace and the host of 'namespace/host' must not be empty"
    if ns not in ("*", ".", "~") and not is_dns_label(ns):
        return f"invalid namespace {ns!r} in {value!r}: use '*', '.', '~' or a namespace name"
    return _gateway_host_part(host, gateway=False)


def host_matches(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: the two hosts overlap (wildcards included)."""
    aw, bw = a.startswith("*"), b.startswith("*")
    if aw and bw:
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if aw:
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every host ``a`` matches is matched by ``b``."""
    if b.startswith("*"):
        return a.endswith(b[1:]) if not a.startswith("*") else a[1:].endswith(b[1:])
    return a == b


def gateway_name_issues(names: Sequence[str] | None, path: Path) -> list[Issue]:
    """Istio's ``validateGatewayNames``: 'mesh', a Gateway name, or 'namespace/name'."""
    out = []
    for i, name in enumerate(names or []):
        ns, slash, gw = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                out.append(warning(path + (i,), f"legacy gateway name {name!r}; prefer the namespace/name form: "
                                                f"{parts[1]}/{parts[0]!s}"))
            problem = host_problem(name, wildcard=False, rule="name a Gateway, 'namespace/name' or 'mesh'")
            if problem:
                out.append(Issue(path + (i,), f"gateway {name!r} is not a valid name: name a Gateway, "
                                              f"'namespace/name' or 'mesh'"))
            continue
        if not ns or not gw:
            out.append(Issue(path + (i,), f"gateway {name!r}: the namespace and the name must not be empty"))
        elif not is_dns_label(ns):
            out.append(Issue(path + (i,), f"gateway {name!r}: invalid namespace {ns!r}"))
        elif not is_dns_label(gw):
            out.append(Issue(path + (i,), f"gateway {name!r}: invalid gateway name {gw!r} (a DNS label, no dots)"))
    return out


ServiceEntryHost = Annotated[str, checked(_service_entry_host)]
DestinationHost = Annotated[str, checked(_destination_host)]
GatewayHost = Annotated[str, checked(gateway_host_problem)]
WildcardHost = Annotated[str, checked(host_problem)]


# --- ServiceEntry --------------------------------------------------------------------------------


class ServicePort(Spec):
    number: int = Field(ge=1, le=65535)
    protocol: Protocol | None = None
    name: PortName
    target_port: int | None = Field(default=None, ge=0, le=65535)

    UNSUPPORTED = frozenset({"target_port"})


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


class WorkloadSelector(Spec):
    """networking.istio.io's selector (ServiceEntry, Sidecar): ``labels``."""

    labels: dict[str, str] = Field(default_factory=dict)

    def issues(self, where: Where) -> Iterable[Issue]:
        return selector_issues(self.labels, ("labels",), "workloadSelector")


class PolicySelector(Spec):
    """The selector of DestinationRule and the security policies: ``matchLabels``."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return selector_issues(self.match_labels or {}, ("matchLabels",), "selector")


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

    UNSUPPORTED = frozenset({"addresses", "workload_selector", "subject_alt_names"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        if self.resolution in (None, "NONE"):
            return [(
                "resolution",
                "resolution NONE needs transparent traffic capture, which exitgate does not do; "
                "use DNS (or STATIC with endpoints)",
            )]
        if self.resolution == "DYNAMIC_DNS":
            return [("resolution", "resolution DYNAMIC_DNS is not supported by exitgate yet; use DNS")]
        return []

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


# --- Gateway -------------------------------------------------------------------------------------


class Port(Spec):
    """A Gateway server's port. Number 0 is for servers bound to a unix socket."""

    number: int = Field(ge=0, le=65535)
    protocol: Protocol
    name: str = Field(min_length=1)
    target_port: int | None = Field(default=None, ge=0, le=65535)


TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]
CIPHER_SUITES = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
})


class TLSCertificate(Spec):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


class ServerTLSSettings(Spec):
    https_redirect: bool | None = None
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"] | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = Field(default=None, max_length=2)
    tls_certificates: list[TLSCertificate] | None = Field(default=None, max_length=2)
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: TLSVersion | None = None
    max_protocol_version: TLSVersion | None = None
    cipher_suites: list[str] | None = None

    UNSUPPORTED = frozenset({
        "https_redirect", "server_certificate", "private_key", "ca_certificates", "ca_crl",
        "credential_name", "credential_names", "tls_certificates", "subject_alt_names", "verify_certificate_spki",
        "verify_certificate_hash", "min_protocol_version", "max_protocol_version", "cipher_suites",
    })

    def issues(self, where: Where) -> Iterable[Issue]:
        """Istio's ``validateTLSOptions``."""
        out: list[Issue] = []
        mode = self.mode or "PASSTHROUGH"
        if self.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not self.cipher_suites:
            out.append(warning(("minProtocolVersion",), "TLS versions below TLSV1_2 need compatible cipherSuites "
                                                        "set explicitly; the defaults no longer include them"))
        seen: set[str] = set()
        for i, suite in enumerate(self.cipher_suites or []):
            if suite and suite != "ALL" and suite[0].isalnum() and suite not in CIPHER_SUITES:
                out.append(warning(("cipherSuites", i), f"unknown cipher suite {suite!r} will be ignored"))
            elif suite in seen:
                out.append(warning(("cipherSuites", i), f"duplicate cipher suite {suite!r} will be ignored"))
            seen.add(suite)
        if self.credential_name and self.credential_names:
            out.append(Issue(("credentialNames",), "set credentialName or credentialNames, not both"))
        if self.tls_certificates and (self.server_certificate or self.private_key):
            out.append(Issue(("tlsCertificates",), "set tlsCertificates or serverCertificate and privateKey, not both"))
        files = [("serverCertificate", self.server_certificate), ("privateKey", self.private_key),
                 ("caCertificates", self.ca_certificates)]
        if mode == "ISTIO_MUTUAL":
            for name, value in files + [("credentialName", self.credential_name)]:
                if value:
                    out.append(Issue((name,), f"ISTIO_MUTUAL uses the mesh's own certificates; remove {name}"))
            return out
        credential = bool(self.credential_name or self.credential_names)
        certificate = bool(self.server_certificate or self.tls_certificates)
        key = bool(self.private_key or self.tls_certificates)
        if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
            if self.ca_crl or credential or any(v for _, v in files):
                out.append(warning((), f"{mode} forwards the client's TLS untouched and uses no certificates; "
                                       f"they will be ignored"))
            return out
        if credential:
            for name, value in files + [("caCrl", self.ca_crl)]:
                if value:
                    out.append(warning((name,), f"{name} is ignored when credentialName is set: the certificates "
                                                f"come from the Secret"))
            return out
        need = [("serverCertificate", certificate, "a server certificate"), ("privateKey", key, "a private key")]
        if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
            need.append(("caCertificates", bool(self.ca_certificates or any(c.ca_certificates for c in
                                                                             self.tls_certificates or [])),
                         "a CA bundle to verify client certificates"))
        for name, present, what in need:
            if not present:
                out.append(Issue((name,), f"{mode} TLS needs {what}: set credentialName (a Secret holding them) "
                                          f"or {name}"))
        if self.ca_crl and mode == "SIMPLE":
            out.append(Issue(("caCrl",), "caCrl checks client certificates, which SIMPLE TLS does not ask for; "
                                         "use MUTUAL or remove caCrl"))
        return out


class Server(Spec):
    port: Port
    bind: str | None = None
    hosts: list[GatewayHost] = Field(min_length=1)
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None

    UNSUPPORTED = frozenset({"bind", "default_endpoint"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        protocol = self.port.protocol
        if protocol not in HTTP_PROTOCOLS | {"HTTPS"}:
            return [("port", f"gateway server protocol {protocol} is not supported by exitgate yet "
                             "(HTTP, HTTP2, GRPC and HTTPS are)")]
        if self.tls is not None and protocol in TLS_PROTOCOLS and self.tls.mode != "ISTIO_MUTUAL":
            mode = self.tls.mode or "PASSTHROUGH (the default when mode is not set)"
            return [(("tls", "mode") if self.tls.mode else ("tls",),
                     f"gateway server TLS mode {mode} is not supported by exitgate yet "
                     "(ISTIO_MUTUAL and plain HTTP servers are)")]
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        port = self.port
        bind = self.bind or ""
        unix = bind.startswith(UNIX_PREFIX)
        if port.number == 0 and not unix:
            out.append(Issue(("port", "number"), f"port number 0 is only for servers bound to a unix socket; "
                                                 f"{PORT_RANGE}"))
        if port.target_port:
            out.append(Issue(("port", "targetPort"), "targetPort has no effect on a Gateway server; remove it"))
        if unix:
            problem = unix_address_problem(bind[len(UNIX_PREFIX):])
            if problem:
                out.append(Issue(("bind",), problem))
            if port.number != 0:
                out.append(Issue(("port", "number"), "a server bound to a unix socket takes port number 0"))
        elif bind and not is_ip(bind):
            out.append(Issue(("bind",), f"bind {bind!r} must be an IP address or unix:///path"))
        protocol = port.protocol
        if protocol in TLS_PROTOCOLS and self.tls is None:
            out.append(Issue(("tls",), f"{_a(protocol)} {protocol} server needs tls settings; for TLS origination at an egress "
                                       f"gateway use tls: {{mode: ISTIO_MUTUAL}}"))
        elif protocol not in TLS_PROTOCOLS and self.tls is not None:
            tls = self.tls
            if protocol in ISTIO_HTTP:
                if tls.mode not in (None, "PASSTHROUGH", "AUTO_PASSTHROUGH") or tls.ca_certificates or \
                        tls.private_key or tls.server_certificate:
                    out.append(Issue(("tls",), f"a plain {protocol} server cannot have TLS settings (only "
                                               f"httpsRedirect); use protocol HTTPS for a TLS server"))
            else:
                out.append(Issue(("tls",), f"{_a(protocol)} {protocol} server cannot have TLS settings; use protocol HTTPS or TLS"))
        if self.tls is not None and self.tls.https_redirect and protocol not in ISTIO_HTTP:
            out.append(warning(("tls", "httpsRedirect"), "httpsRedirect applies only to HTTP servers"))
        return out


class GatewaySpec(Spec):
    selector: dict[str, str] = Field(default_factory=dict)
    servers: list[Server] = Field(min_length=1)

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        names: dict[str, int] = {}
        for i, server in enumerate(self.servers):
            name = server.port.name
            if name in names:
                out.append(Issue(("servers", i, "port", "name"), f"port name {name!r} is already used by "
                                                                  f"servers[{names[name]}]; each server's port needs "
                                                                  f"its own name"))
            names.setdefault(name, i)
        return out


# --- VirtualService ------------------------------------------------------------------------------

_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
RE2_UNSUPPORTED = re.compile(r"\(\?[=!<]|\\[1-9]")


def _regex_problem(regex: str) -> str | None:
    if not regex:
        return "a regex match must not be empty"
    if len(regex) > 1024:
        return "regex is too long: at most 1024 characters"
    if RE2_UNSUPPORTED.search(regex):
        return f"regex {regex!r} uses lookaround or a backreference, which RE2 (Envoy's regex engine) does not have"
    try:
        re.compile(regex)
    except re.error as e:
        return f"regex {regex!r} is invalid: {e}; Istio uses RE2 syntax"
    return None


def _header_name_issues(names: Iterable[str], path: Path, *, claims: bool = False) -> list[Issue]:
    out = []
    for name in names:
        if claims and name.startswith("@request.auth.claims"):
            continue
        if not _HEADER_NAME.match(name):
            out.append(Issue(path + (name,), f"header name {name!r} is invalid: letters, digits, '-' and '_' only"))
    return out


class StringMatch(Spec):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    UNSUPPORTED = frozenset({"regex"})

    @model_validator(mode="after")
    def _one_of(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("exactly one of exact, prefix or regex must be set")
        return self

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.prefix == "":
            return [Issue(("prefix",), "a prefix match must not be empty; to match everything leave the match out")]
        if self.regex is not None:
            problem = _regex_problem(self.regex)
            if problem:
                return [Issue(("regex",), problem)]
        return []


class HTTPMatchRequest(Spec):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] | None = None
    source_namespace: str | None = None
    stat_prefix: str | None = None

    UNSUPPORTED = frozenset({
        "scheme", "method", "authority", "headers", "source_labels", "query_params",
        "ignore_uri_case", "without_headers", "source_namespace", "stat_prefix",
    })

    def issues(self, where: Where) -> Iterable[Issue]:
        out = _header_name_issues(self.headers or {}, ("headers",), claims=True)
        out += _header_name_issues(self.without_headers or {}, ("withoutHeaders",), claims=True)
        out += labels_issues(self.source_labels, ("sourceLabels",))
        out += gateway_name_issues(self.gateways, ("gateways",))
        if self.source_namespace is not None and not is_dns_label(self.source_namespace):
            out.append(Issue(("sourceNamespace",), f"sourceNamespace {self.source_namespace!r} is not a namespace name"))
        return out


class PortSelector(Spec):
    number: int = Field(ge=1, le=65535)


class Destination(Spec):
    host: DestinationHost
    subset: SubsetName | None = None
    port: PortSelector | None = None


class HeaderOperations(Spec):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(Spec):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        for side, ops in (("request", self.request), ("response", self.response)):
            if ops is None:
                continue
            for op in ("set", "add", "remove"):
                values: dict[str, str] | list[str] | None = getattr(ops, op)
                items = list(values.items()) if isinstance(values, dict) else [(n, "") for n in values or []]
                for i, (name, value) in enumerate(items):
                    at: Path = (side, op, name) if isinstance(values, dict) else (side, op, i)
                    lower = name.lower()
                    authority = side == "request" and op != "remove" and lower in (":authority", "host")
                    if not name:
                        out.append(Issue(at, "header name must not be empty"))
                    elif not authority and (name.startswith(":") or lower == "host"):
                        out.append(Issue(at, f"header {name!r} cannot be changed here (':' pseudo-headers and Host "
                                             f"are managed by the proxy; rewrite the authority with rewrite.authority)"))
                    elif not _HEADER_VALUE.match(value):
                        out.append(Issue(at, f"header {name!r}: the value has control characters"))
        return out


class HTTPRouteDestination(Spec):
    destination: Destination
    weight: int | None = Field(default=None, ge=0, le=100)
    headers: Headers | None = None

    UNSUPPORTED = frozenset({"headers"})


class HTTPRedirect(Spec):
    uri: str | None = None
    authority: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: int | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if not (self.uri or self.authority or self.port or self.derive_port or self.scheme):
            out.append(Issue((), "a redirect must set uri, authority, scheme or port"))
        if self.redirect_code is not None and not 300 <= self.redirect_code <= 399:
            out.append(Issue(("redirectCode",), f"redirect code {self.redirect_code} must be 3xx"))
        if self.scheme is not None and self.scheme not in ("http", "https"):
            out.append(Issue(("scheme",), "redirect scheme must be http or https"))
        return out


class HTTPBody(Spec):
    string: str | None = None
    bytes: str | None = None


class HTTPDirectResponse(Spec):
    status: int = Field(ge=200, le=600)
    body: HTTPBody | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        body = (self.body.string or self.body.bytes or "") if self.body else ""
        if len(body) > 1024 * 1024:
            return [Issue(("body",), "a direct response body must be less than 1MB")]
        if len(body) > 100 * 1024:
            return [warning(("body",), "large direct response bodies slow the control plane down")]
        return []


class Delegate(Spec):
    name: str | None = None
    namespace: str | None = None


class RegexRewrite(Spec):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(Spec):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.uri and self.uri_regex_rewrite is not None:
            out.append(Issue(("uriRegexRewrite",), "a rewrite takes uri or uriRegexRewrite, not both"))
        if not self.uri and self.uri_regex_rewrite is None and not self.authority:
            out.append(Issue((), "a rewrite must set uri, uriRegexRewrite or authority"))
        rx = self.uri_regex_rewrite
        if rx is not None:
            if not rx.match or not rx.rewrite:
                out.append(Issue(("uriRegexRewrite",), "uriRegexRewrite needs both match and rewrite"))
            elif _regex_problem(rx.match):
                out.append(Issue(("uriRegexRewrite", "match"), _regex_problem(rx.match) or ""))
        return out


RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})


class HTTPRetry(Spec):
    attempts: int | None = Field(default=None, ge=0)
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if not self.attempts and (self.per_try_timeout or self.retry_on or self.retry_remote_localities is not None):
            out.append(Issue(("attempts",), "retries are configured but attempts is 0 (retries off); set attempts"))
        for policy in (self.retry_on or "").split(",") if self.retry_on else []:
            if policy not in RETRY_ON and not (policy.isdigit() and 100 <= int(policy) <= 599):
                out.append(Issue(("retryOn",), f"{policy!r} is not a retryOn policy (like 5xx, connect-failure, "
                                               f"reset or an HTTP status code)"))
        return out


class Percent(Spec):
    value: float = Field(ge=0, le=100)


class FaultDelay(Spec):
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: int | None = Field(default=None, ge=0, le=100)

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.exponential_delay is not None:
            return [Issue(("exponentialDelay",), "exponentialDelay is not supported by Istio; use fixedDelay")]
        return []


class FaultAbort(Spec):
    http_status: int | None = Field(default=None, ge=200, le=600)
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.http2_error is not None:
            return [Issue(("http2Error",), "http2Error aborts are not supported by Istio; use httpStatus")]
        if self.http_status is None and self.grpc_status is None:
            return [warning((), "abort is configured without httpStatus or grpcStatus")]
        return []


class HTTPFaultInjection(Spec):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.delay is None and self.abort is None:
            return [Issue((), "fault injection needs an abort, a delay or both")]
        return []


class HTTPMirrorPolicy(Spec):
    destination: Destination
    percentage: Percent | None = None


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})


class CorsPolicy(Spec):
    allow_origins: list[StringMatch] | None = None
    allow_origin: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        for i, m in enumerate(self.allow_methods or []):
            if m not in HTTP_METHODS:
                out.append(Issue(("allowMethods", i), f"{m!r} is not an HTTP method ({', '.join(sorted(HTTP_METHODS))})"))
        for field, names in (("allowHeaders", self.allow_headers), ("exposeHeaders", self.expose_headers)):
            for i, name in enumerate(names or []):
                if name != "*" and not _HEADER_NAME.match(name):
                    out.append(Issue((field, i), f"header name {name!r} is invalid: letters, digits, '-' and '_' only"))
        return out


class HTTPRoute(Spec):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    mirror_percentage: Percent | None = None
    mirror_percent: int | None = Field(default=None, ge=0, le=100)
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    UNSUPPORTED = frozenset({
        "redirect", "direct_response", "delegate", "rewrite", "timeout", "retries", "fault",
        "mirror", "mirrors", "mirror_percentage", "mirror_percent", "cors_policy", "headers",
    })

    @model_validator(mode="after")
    def _weights(self) -> HTTPRoute:
        if self.route and len(self.route) > 1:
            total = sum(d.weight or 0 for d in self.route)
            if total != 100:
                raise ValueError(f"route weights must sum to 100, they sum to {total}")
        if not self.route and self.redirect is None and self.direct_response is None and self.delegate is None:
            raise ValueError("an http route needs route, redirect, directResponse or delegate")
        return self

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.delegate is not None:
            for name in ("route", "redirect"):
                if getattr(self, name) is not None:
                    out.append(Issue((name,), f"a route with delegate cannot also set {name}"))
        if self.redirect is not None:
            for name, alias in (("route", "route"), ("fault", "fault"), ("rewrite", "rewrite"),
                                ("direct_response", "directResponse")):
                if getattr(self, name):
                    out.append(Issue((alias,), f"a route with redirect cannot also set {alias}"))
        if self.mirror_percent is not None:
            out.append(warning(("mirrorPercent",), "mirrorPercent is deprecated; use mirrorPercentage"))
        return out


class L4MatchAttributes(Spec):
    destination_subnets: list[IPOrCIDR] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    source_subnet: str | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return labels_issues(self.source_labels, ("sourceLabels",)) + gateway_name_issues(self.gateways, ("gateways",))


class TLSMatchAttributes(Spec):
    sni_hosts: list[str] = Field(min_length=1)
    destination_subnets: list[IPOrCIDR] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return labels_issues(self.source_labels, ("sourceLabels",)) + gateway_name_issues(self.gateways, ("gateways",))


class RouteDestination(Spec):
    destination: Destination
    weight: int | None = Field(default=None, ge=0)


def _route_weight_issues(route: Sequence[RouteDestination]) -> list[Issue]:
    if len(route) > 1 and sum(d.weight or 0 for d in route) == 0:
        return [Issue(("route",), "the route weights add up to 0; give the destinations weights")]
    return []


class TLSRoute(Spec):
    match: list[TLSMatchAttributes] = Field(min_length=1)
    route: list[RouteDestination] = Field(min_length=1)

    def issues(self, where: Where) -> Iterable[Issue]:
        return _route_weight_issues(self.route)


class TCPRoute(Spec):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] = Field(min_length=1)

    def issues(self, where: Where) -> Iterable[Issue]:
        return _route_weight_issues(self.route)


MESH = "mesh"


class VirtualServiceSpec(Spec):
    # Required (delegate VirtualServices, which have none, are not supported): a missing list is
    # reported as a missing field at spec.hosts, not as a bad value of spec.
    hosts: list[str] = Field(min_length=1)
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    export_to: list[str] | None = None

    UNSUPPORTED = frozenset({"tls", "tcp"})

    def issues(self, where: Where) -> Iterable[Issue]:
        out = gateway_name_issues(self.gateways, ("gateways",))
        bound_to_gateway = bool(self.gateways) and MESH not in (self.gateways or [])
        valid = True
        for i, host in enumerate(self.hosts):
            problem = host_problem(host)
            if problem and not is_ip(host):
                out.append(Issue(("hosts", i), problem))
                valid = False
            elif host == "*" and not bound_to_gateway:
                out.append(Issue(("hosts", i), "host '*' is allowed only in a VirtualService bound to gateways "
                                               "(not 'mesh'); name the hosts"))
                valid = False
        if valid:
            for j, b in enumerate(self.hosts):
                for i, a in enumerate(self.hosts[:j]):
                    if host_matches(a, b):
                        out.append(Issue(("hosts", j), f"duplicate host: {b!r} overlaps hosts[{i}] {a!r}; "
                                                       f"list each host once"))
                        break
        if not self.http and not self.tcp and not self.tls:
            out.append(Issue((), "a VirtualService needs http, tcp or tls routes"))
        if not bound_to_gateway:
            for i, http in enumerate(self.http or []):
                for j, match in enumerate(http.match or []):
                    for field, headers in (("headers", match.headers), ("withoutHeaders", match.without_headers)):
                        for name in headers or {}:
                            if name.startswith("@request.auth.claims"):
                                out.append(Issue(("http", i, "match", j, field, name),
                                                 "JWT claim based routing works only for VirtualServices bound to "
                                                 "gateways"))
        for i, route in enumerate(self.tls or []):
            for j, tls_match in enumerate(route.match):
                for k, sni in enumerate(tls_match.sni_hosts):
                    at: Path = ("tls", i, "match", j, "sniHosts", k)
                    problem = host_problem(sni)
                    if problem:
                        out.append(warning(at, f"SNI host {sni!r} is an IP address, which most clients never send")
                                   if is_ip(sni) else Issue(at, problem))
                    elif not any(host_subset_of(sni, h) for h in self.hosts):
                        out.append(Issue(at, f"SNI host {sni!r} is not one of this VirtualService's hosts "
                                             f"({', '.join(self.hosts)})"))
        out.extend(export_to_issues(self.export_to, where.namespace, ("exportTo",)))
        return out


# --- DestinationRule -----------------------------------------------------------------------------


class HTTPCookie(Spec):
    name: str = Field(min_length=1)
    path: str | None = None
    ttl: Duration | None = None


class RingHash(Spec):
    minimum_ring_size: int | None = Field(default=None, ge=0)


class Maglev(Spec):
    table_size: int | None = Field(default=None, ge=0)

    def issues(self, where: Where) -> Iterable[Issue]:
        size = self.table_size or 0
        if size == 0:
            return [Issue(("tableSize",), "maglev needs tableSize (a prime number, like 65537)")]
        if size >= 5000011:
            return [Issue(("tableSize",), "maglev tableSize must be less than 5000011")]
        if size > 3 and (size % 2 == 0 or any(size % f == 0 for f in range(3, math.isqrt(size) + 1, 2))):
            return [Issue(("tableSize",), f"maglev tableSize {size} must be a prime number (like 65537)")]
        return []


class ConsistentHashLB(Spec):
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: Maglev | None = None
    minimum_ring_size: int | None = Field(default=None, ge=0)

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        keys = [k for k in ("http_header_name", "http_cookie", "use_source_ip", "http_query_parameter_name")
                if getattr(self, k) is not None]
        if len(keys) > 1:
            out.append(Issue((), "consistentHash takes one of httpHeaderName, httpCookie, useSourceIp or "
                                 "httpQueryParameterName"))
        if self.ring_hash is not None and self.maglev is not None:
            out.append(Issue((), "consistentHash takes ringHash or maglev, not both"))
        if self.minimum_ring_size:
            if self.ring_hash is not None or self.maglev is not None:
                out.append(Issue(("minimumRingSize",), "set the ring size in ringHash, not both"))
            else:
                out.append(warning(("minimumRingSize",), "minimumRingSize is deprecated; use ringHash.minimumRingSize"))
        return out


class LocalityDistribute(Spec):
    from_: str | None = Field(default=None, alias="from")
    to: dict[str, int] | None = None


class LocalityFailover(Spec):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class LocalityLoadBalancerSetting(Spec):
    distribute: list[LocalityDistribute] | None = None
    failover: list[LocalityFailover] | None = None
    failover_priority: list[str] | None = None
    enabled: bool | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.distribute and self.failover:
            out.append(Issue(("failover",), "set distribute or failover, not both"))
        for i, d in enumerate(self.distribute or []):
            weights = list((d.to or {}).values())
            if any(not 1 <= w <= 100 for w in weights):
                out.append(Issue(("distribute", i, "to"), "locality weights must be 1-100"))
            elif sum(weights) != 100:
                out.append(Issue(("distribute", i, "to"), f"locality weights must add up to 100, not {sum(weights)}"))
        for i, f in enumerate(self.failover or []):
            if f.from_ == f.to:
                out.append(Issue(("failover", i), "a failover must go to a different region"))
            elif "/" in (f.from_ or "") + (f.to or "") or "*" in (f.from_ or "") + (f.to or ""):
                out.append(Issue(("failover", i), "failover names regions only (no '/', no '*')"))
        return out


class LoadBalancerSettings(Spec):
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"] | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None
    warmup: dict[str, Any] | None = None

    UNSUPPORTED = frozenset({"consistent_hash", "locality_lb_setting", "warmup_duration_secs", "warmup"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        if self.simple == "PASSTHROUGH":
            return [("simple", "PASSTHROUGH load balancing is not supported by exitgate yet")]
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.simple is not None and self.consistent_hash is not None:
            return [Issue(("consistentHash",), "a loadBalancer takes simple or consistentHash, not both")]
        return []


class TcpKeepalive(Spec):
    probes: int | None = Field(default=None, ge=0, le=4294967295)
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(Spec):
    max_connections: int | None = Field(default=None, ge=0)
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class HTTPSettings(Spec):
    http1_max_pending_requests: int | None = Field(default=None, ge=0)
    http2_max_requests: int | None = Field(default=None, ge=0)
    max_requests_per_connection: int | None = Field(default=None, ge=0)
    max_retries: int | None = Field(default=None, ge=0)
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: int | None = Field(default=None, ge=0)

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.h2_upgrade_policy == "UPGRADE" and self.use_client_protocol:
            return [Issue(("useClientProtocol",), "useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE")]
        return []


class ConnectionPoolSettings(Spec):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.tcp is None and self.http is None:
            return [Issue((), "a connectionPool needs tcp or http settings")]
        return []


class OutlierDetection(Spec):
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: int | None = Field(default=None, ge=0)
    consecutive_gateway_errors: int | None = Field(default=None, ge=0)
    consecutive_5xx_errors: int | None = Field(default=None, ge=0, alias="consecutive5xxErrors")
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100)
    min_health_percent: int | None = Field(default=None, ge=0, le=100)
    consecutive_errors: int | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.consecutive_errors:
            out.append(warning(("consecutiveErrors",), "consecutiveErrors is deprecated; use consecutiveGatewayErrors "
                                                       "or consecutive5xxErrors"))
        if self.consecutive_local_origin_failures and not self.split_external_local_origin_errors:
            out.append(Issue(("consecutiveLocalOriginFailures",), "consecutiveLocalOriginFailures needs "
                                                                  "splitExternalLocalOriginErrors: true"))
        return out


class ClientTLSSettings(Spec):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        """Istio's ``ValidateTLS``."""
        out: list[Issue] = []
        mode = self.mode or "DISABLE"
        if self.insecure_skip_verify:
            clash = [("caCertificates", self.ca_certificates), ("subjectAltNames", self.subject_alt_names)]
            if mode == "SIMPLE":
                clash.insert(1, ("credentialName", self.credential_name))
            for name, value in clash:
                if value:
                    out.append(Issue((name,), f"insecureSkipVerify turns server verification off, so {name} cannot "
                                              f"be set with it; remove one of them"))
            if self.ca_crl:
                out.append(warning(("caCrl",), "caCrl has no effect with insecureSkipVerify"))
        if mode in ("SIMPLE", "MUTUAL") and self.credential_name:
            for name, value in (("clientCertificate", self.client_certificate), ("privateKey", self.private_key),
                                ("caCertificates", self.ca_certificates), ("caCrl", self.ca_crl)):
                if value:
                    out.append(Issue((name,), f"credentialName cannot be combined with {name}: the Secret supplies "
                                              f"the certificates; remove {name} or credentialName"))
            return out
        if mode == "MUTUAL":
            for name, value, what in (("clientCertificate", self.client_certificate, "a client certificate"),
                                      ("privateKey", self.private_key, "a private key")):
                if not value:
                    out.append(Issue((name,), f"MUTUAL TLS needs {what}: set credentialName (a Secret with tls.crt "
                                              f"and tls.key) or clientCertificate and privateKey"))
        unused: list[str] = []
        if mode == "DISABLE":
            unused = [n for n, v in (("clientCertificate", self.client_certificate), ("privateKey", self.private_key),
                                     ("caCertificates", self.ca_certificates), ("credentialName", self.credential_name),
                                     ("subjectAltNames", self.subject_alt_names), ("sni", self.sni),
                                     ("caCrl", self.ca_crl)) if v]
        elif mode == "ISTIO_MUTUAL":
            unused = [n for n, v in (("clientCertificate", self.client_certificate), ("privateKey", self.private_key),
                                     ("caCertificates", self.ca_certificates), ("credentialName", self.credential_name),
                                     ("caCrl", self.ca_crl)) if v]
        for name in unused:
            out.append(warning((name,), f"{name} is ignored with TLS mode {mode}"))
        return out


class TunnelSettings(Spec):
    protocol: str | None = None
    target_host: str = Field(min_length=1)
    target_port: int

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.protocol not in (None, "", "CONNECT", "POST"):
            out.append(Issue(("protocol",), "tunnel protocol must be CONNECT or POST"))
        if host_problem(self.target_host, wildcard=False) and not is_ip(self.target_host):
            out.append(Issue(("targetHost",), f"tunnel targetHost {self.target_host!r} must be a fully qualified "
                                              f"domain name or an IP address"))
        if _port_problem(self.target_port):
            out.append(Issue(("targetPort",), _port_problem(self.target_port) or ""))
        return out


class ProxyProtocol(Spec):
    version: Literal["V1", "V2"] | None = None


class PortTrafficPolicy(Spec):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None

    UNSUPPORTED = frozenset({"connection_pool", "outlier_detection"})

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.port is None:
            out.append(Issue(("port",), "a portLevelSettings entry needs port: {number: N}"))
        if not (self.load_balancer or self.connection_pool or self.outlier_detection or self.tls):
            out.append(Issue((), "a portLevelSettings entry needs at least one of loadBalancer, connectionPool, "
                                 "outlierDetection or tls"))
        return out


class TrafficPolicy(Spec):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: dict[str, Any] | None = None

    UNSUPPORTED = frozenset({"connection_pool", "outlier_detection", "tunnel", "proxy_protocol", "retry_budget"})

    def issues(self, where: Where) -> Iterable[Issue]:
        if not self.model_fields_set:
            return [Issue((), "trafficPolicy is empty; set loadBalancer, connectionPool, outlierDetection, tls, "
                              "portLevelSettings, tunnel or proxyProtocol, or remove it")]
        if self.tunnel is not None and self.proxy_protocol is not None:
            return [Issue(("proxyProtocol",), "tunnel and proxyProtocol cannot be set together")]
        return []


class Subset(Spec):
    name: SubsetName
    labels: dict[str, str] | None = None
    traffic_policy: TrafficPolicy | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return labels_issues(self.labels, ("labels",))


class DestinationRuleSpec(Spec):
    host: WildcardHost
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None
    workload_selector: PolicySelector | None = None

    UNSUPPORTED = frozenset({"workload_selector"})

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        names: dict[str, int] = {}
        for i, subset in enumerate(self.subsets or []):
            if subset.name in names:
                out.append(Issue(("subsets", i, "name"), f"duplicate subset name {subset.name!r} "
                                                         f"(subsets[{names[subset.name]}] has it); each subset needs "
                                                         f"its own name"))
            names.setdefault(subset.name, i)
        out.extend(export_to_issues(self.export_to, where.namespace, ("exportTo",)))
        if self.workload_selector is not None and self.export_to:
            others = {where.namespace if e == "." else e for e in self.export_to} - {where.namespace}
            if others:
                out.append(Issue(("exportTo",), "a DestinationRule with a workloadSelector applies only in its own "
                                                "namespace; exportTo may only be '.'"))
        return out
