"""Istio's ``networking.istio.io`` Sidecar, parsed and validated as Istio does
(``ValidateSidecar``). exitgate enforces a Sidecar's egress scope and outbound traffic policy
(``translate/scope.py``); the fields with no meaning here yet (ingress listeners, the inbound
connection pool, binds, capture modes, an egress proxy) are reported as not supported, after
they have been validated."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field

from exitgate.api.base import (
    UNIX_PREFIX,
    Issue,
    Spec,
    Where,
    checked,
    host_problem,
    is_ip,
    label_problem,
    unix_address_problem,
    warning,
)
from exitgate.api.networking import (
    ISTIO_HTTP,
    TLS_PROTOCOLS,
    ConnectionPoolSettings,
    Destination,
    Protocol,
    ServerTLSSettings,
    WorkloadSelector,
    sidecar_host_problem,
)

SidecarHost = Annotated[str, checked(sidecar_host_problem)]
CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]
LOCAL_HOSTS = ("127.0.0.1", "0.0.0.0", "::1", "::")


class SidecarPort(Spec):
    number: int = Field(ge=0, le=65535)  # 0: an egress listener on a unix socket
    protocol: Protocol | None = None
    name: str | None = None
    target_port: int | None = Field(default=None, ge=0, le=65535)

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.name:
            problem = label_problem(self.name, "port name")
            if problem:
                out.append(Issue(("name",), problem))
        if self.target_port:
            out.append(Issue(("targetPort",), "targetPort has no effect on a Sidecar; remove it"))
        return out


def _bind_issues(bind: str | None) -> list[Issue]:
    if bind and not is_ip(bind):
        return [Issue(("bind",), f"bind {bind!r} must be an IP address")]
    return []


class IstioIngressListener(Spec):
    port: SidecarPort
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = _bind_issues(self.bind)
        if self.port.number == 0:
            out.append(Issue(("port", "number"), "an ingress listener needs a port number 1-65535"))
        endpoint = self.default_endpoint
        if endpoint:
            if endpoint.startswith(UNIX_PREFIX):
                problem = unix_address_problem(endpoint[len(UNIX_PREFIX):])
                if problem:
                    out.append(Issue(("defaultEndpoint",), problem))
            else:
                host, sep, port = endpoint.rpartition(":")
                host = host.strip("[]")
                if not sep or (host and host not in LOCAL_HOSTS) or not port.isdigit() or not 1 <= int(port) <= 65535:
                    out.append(Issue(("defaultEndpoint",), "defaultEndpoint must be 127.0.0.1:PORT, 0.0.0.0:PORT, "
                                                           "[::1]:PORT, [::]:PORT or unix:///path"))
        tls = self.tls
        if tls is not None:
            for field, present in (("subjectAltNames", tls.subject_alt_names), ("httpsRedirect", tls.https_redirect),
                                   ("credentialName", tls.credential_name), ("credentialNames", tls.credential_names),
                                   ("tlsCertificates", tls.tls_certificates)):
                if present:
                    out.append(Issue(("tls", field), f"{field} is not supported in a Sidecar's ingress tls"))
            if tls.mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
                out.append(Issue(("tls", "mode"), f"tls mode {tls.mode} cannot be used in a Sidecar's ingress tls"))
            if self.port.protocol not in TLS_PROTOCOLS:
                out.append(Issue(("tls",), f"an ingress listener on a {self.port.protocol or 'plain'} port cannot "
                                           f"have tls settings; use protocol HTTPS or TLS"))
        if self.connection_pool is not None and self.connection_pool.http is not None and \
                self.port.protocol not in ISTIO_HTTP:
            out.append(warning(("connectionPool", "http"), f"HTTP connection pool settings on port {self.port.number}, "
                                                           f"whose protocol is not HTTP: only the tcp settings apply"))
        return out


class IstioEgressListener(Spec):
    UNSUPPORTED = frozenset({"bind", "capture_mode"})

    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[SidecarHost] = Field(min_length=1)

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        bind = self.bind or ""
        if self.port is not None and self.port.number == 0:
            if not bind.startswith(UNIX_PREFIX):
                out.append(Issue(("bind",), "a listener on port 0 needs a unix socket bind (unix:///path)"))
            else:
                problem = unix_address_problem(bind[len(UNIX_PREFIX):])
                if problem:
                    out.append(Issue(("bind",), problem))
            if self.capture_mode not in (None, "DEFAULT", "NONE"):
                out.append(Issue(("captureMode",), "captureMode must be DEFAULT or NONE on a unix socket listener"))
        elif self.port is not None:
            out.extend(_bind_issues(self.bind))
        seen: dict[str, set[str]] = {}
        for i, host in enumerate(self.hosts):
            ns, _, name = host.partition("/")
            if ns.startswith("~"):
                continue  # an exclusion: it imports nothing, so it duplicates nothing
            ns = where.namespace if ns == "." else ns
            names = seen.setdefault(ns, set())
            if (name != "*" and (name in names or "*" in names)) or (name == "*" and names):
                out.append(warning(("hosts", i), f"duplicated egress host {host!r}"))
            names.add(name)
        if "*" in seen.get("*", set()) and len(seen) > 1:
            out.append(warning(("hosts",), "'*/*' selects every host; the other hosts add nothing"))
        return out


class OutboundTrafficPolicy(Spec):
    UNSUPPORTED = frozenset({"egress_proxy"})

    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egress_proxy: Destination | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        proxy = self.egress_proxy
        if proxy is None:
            return []
        if self.mode != "ALLOW_ANY":
            return [Issue(("egressProxy",), "egressProxy can be set only with mode ALLOW_ANY")]
        out = []
        if host_problem(proxy.host, wildcard=False):
            out.append(Issue(("egressProxy", "host"), f"egressProxy host {proxy.host!r} must be a fully qualified "
                                                      f"domain name"))
        if proxy.port is None:
            out.append(Issue(("egressProxy", "port"), "egressProxy needs a port: {number: N}"))
        return out


class SidecarSpec(Spec):
    UNSUPPORTED = frozenset({"ingress", "inbound_connection_pool"})

    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] | None = None
    egress: list[IstioEgressListener] | None = None
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        if not self.ingress and not self.egress and self.outbound_traffic_policy is None and \
                self.inbound_connection_pool is None:
            out.append(Issue((), "a Sidecar needs egress, ingress, outboundTrafficPolicy or inboundConnectionPool"))
        ports: dict[int, int] = {}
        for i, in_listener in enumerate(self.ingress or []):
            n = in_listener.port.number
            if n in ports:
                out.append(Issue(("ingress", i, "port", "number"), f"port {n} is already used by ingress[{ports[n]}]; "
                                                                   f"ports of ingress listeners must be unique"))
            ports.setdefault(n, i)
        ports = {}
        sockets: dict[str, int] = {}
        egress = self.egress or []
        catch_all = False
        for i, listener in enumerate(egress):
            if listener.port is not None:
                continue
            if catch_all:
                out.append(Issue(("egress", i), "only one egress listener can have no port (the catch-all)"))
            elif i == len(egress) - 1:
                catch_all = True
            else:
                out.append(Issue(("egress", i), "the egress listener without a port (the catch-all) must be the "
                                                "last one"))
        for i, out_listener in enumerate(egress):
            if out_listener.port is None:
                continue
            if out_listener.port.number == 0:
                bind = out_listener.bind or ""
                if bind in sockets:
                    out.append(Issue(("egress", i, "bind"), f"unix socket {bind} is already used by egress[{sockets[bind]}]"))
                sockets.setdefault(bind, i)
            else:
                n = out_listener.port.number
                if n in ports:
                    out.append(Issue(("egress", i, "port", "number"), f"port {n} is already used by egress[{ports[n]}]; "
                                                                      f"ports of egress listeners must be unique"))
                ports.setdefault(n, i)
        return out
