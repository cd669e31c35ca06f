"""The inventory: which proxies exist (gateways and workloads), the Kubernetes-style services
they answer as, services outside the mesh, and the machine-level settings (DNS, trust store).

Defaults equal Istio's default install and its ``sleep`` sample, so Istio's YAML works as is.
A mesh file (YAML, same field names as below in camelCase) adds gateways, workloads and
services. Gateway service ports map to container ports like Istio's egress gateway (80 -> 8080,
443 -> 8443), so no root is needed.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel
from ruamel.yaml import YAML

from exitgate import names
from exitgate.api.meshconfig import MeshConfigText, access_log_format_problem
from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.loader import pydantic_diagnostics

DEFAULT_SYSTEM_TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True)


class ServicePortMap(_Model):
    port: int = Field(ge=1, le=65535)
    target_port: int = Field(ge=1, le=65535)
    name: str = ""
    protocol: Literal["HTTP", "HTTP2", "HTTPS", "TCP", "TLS", "GRPC"] = "HTTP"


class GatewayProxy(_Model):
    name: str
    namespace: str = "istio-system"
    labels: dict[str, str] = Field(default_factory=dict)
    service_account: str = ""
    # The Kubernetes Service name the gateway answers as; defaults to the gateway's name.
    service: str = ""
    address: str = "127.0.0.1"
    ports: list[ServicePortMap] = Field(default_factory=list)
    # Envoy processes behind the gateway's Service, like a Deployment's pods: replica i listens
    # on ``address`` + i (127.0.0.1, 127.0.0.2, ...; every 127/8 address is loopback on Linux),
    # and the sidecars' cluster for the Service has every replica as an endpoint.
    replicas: int = Field(default=1, ge=1, le=16)

    @field_validator("address")
    @classmethod
    def _an_ip(cls, v: str) -> str:
        ipaddress.ip_address(v)  # ValueError names the field
        return v

    @property
    def service_host(self) -> str:
        return names.service_fqdn(self.service or self.name, self.namespace)

    @property
    def replica_addresses(self) -> list[str]:
        first = ipaddress.ip_address(self.address)
        return [str(first + i) for i in range(self.replicas)]

    def replica_name(self, i: int) -> str:
        """A single gateway keeps its name; replicas are NAME-0, NAME-1, ... like a StatefulSet's pods."""
        return self.name if self.replicas == 1 else f"{self.name}-{i}"

    @property
    def identity(self) -> tuple[str, str]:
        return (self.namespace, self.service_account or f"{self.name}-service-account")


class WorkloadProxy(_Model):
    name: str
    namespace: str = "default"
    service_account: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    address: str = "127.0.0.1"
    # The sidecar's forward-proxy port (the workload's HTTP_PROXY); 0 = pick a free one at `up`.
    proxy_port: int = Field(default=0, ge=0, le=65535)

    @property
    def identity(self) -> tuple[str, str]:
        return (self.namespace, self.service_account or self.name)


class ExternalService(_Model):
    """A Kubernetes Service without sidecars (e.g. ``my-nginx`` in ``mesh-external``)."""

    name: str
    namespace: str
    address: str = "127.0.0.1"
    ports: list[ServicePortMap] = Field(min_length=1)
    # Istio's exportTo for a Kubernetes Service (its networking.istio.io/exportTo annotation):
    # the namespaces whose proxies see it ("." its own, "*" all); empty: all.
    export_to: list[str] = Field(default_factory=list)

    @property
    def host(self) -> str:
        return names.service_fqdn(self.name, self.namespace)


class DnsSettings(_Model):
    # "ip:port" strings; empty = the system's resolvers (Envoy reads /etc/resolv.conf).
    resolvers: list[str] = Field(default_factory=list)

    def parsed(self) -> tuple[tuple[str, int], ...]:
        out = []
        for r in self.resolvers:
            host, _, port = r.rpartition(":")
            out.append((host, int(port)) if host else (r, 53))
        return tuple(out)


class ProxyStatsMatcher(_Model):
    """Istio's ``meshConfig.defaultConfig.proxyStatsMatcher``: the Envoy stats every proxy keeps
    beyond Istio's required set (server, cluster_manager, listener_manager, xds-grpc, RBAC
    and Istio's own metrics). Per-cluster stats such as ``cluster.outbound|443||host.*`` are
    off by default, as in Istio: at thousands of clusters they are most of Envoy's memory."""

    inclusion_prefixes: list[str] = Field(default_factory=list)
    inclusion_suffixes: list[str] = Field(default_factory=list)
    inclusion_regexps: list[str] = Field(default_factory=list)

    @field_validator("inclusion_regexps")
    @classmethod
    def _regexps_compile(cls, v: list[str]) -> list[str]:
        for r in v:
            try:
                re.compile(r)
            except re.error as e:
                raise ValueError(f"invalid regular expression {r!r}: {e}") from None
        return v


class OutboundTrafficPolicy(_Model):
    """Istio's ``meshConfig.outboundTrafficPolicy``: ALLOW_ANY (Istio's default install) lets a
    host no service declares go out (``PassthroughCluster``); REGISTRY_ONLY answers it with 502
    (``block_all``)."""

    mode: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"


class MeshConfig(_Model):
    # Transparent capture of each workload's traffic (exitgate.capture): "auto" captures where
    # it can (root on Linux, with nftables) and says so when it cannot; "on" requires it;
    # "off" keeps the forward-proxy mode (http_proxy/https_proxy) everywhere.
    capture: Literal["auto", "on", "off"] = "auto"
    trust_domain: str = names.DEFAULT_TRUST_DOMAIN
    root_namespace: str = "istio-system"
    # The CA bundle that verifies external servers when a DestinationRule gives no caCertificates
    # (Istio uses the proxy's OS bundle).
    system_trust_store: str = DEFAULT_SYSTEM_TRUST_STORE
    dns: DnsSettings = Field(default_factory=DnsSettings)
    # Where external services' ports really are on this machine: {443: 18443} makes a
    # ServiceEntry's port 443 connect to port 18443 of the resolved address; a key "HOST:PORT"
    # ({"edition.cnn.com:443": 18443}) maps one host's port only, and wins over the port's own.
    # For running Istio's examples against local servers without privileged ports; empty by default.
    external_port_map: dict[int | str, int] = Field(default_factory=dict)
    workload_cert_ttl_seconds: int = Field(default=3600, ge=60)
    access_log: bool = True
    # Istio's meshConfig.accessLogEncoding and accessLogFormat: TEXT (Istio's default format
    # when the format is empty) or JSON (Istio's default fields when empty, else a JSON object
    # of field names to command operators).
    access_log_encoding: Literal["TEXT", "JSON"] = "TEXT"
    access_log_format: str = ""
    proxy_stats_matcher: ProxyStatsMatcher = Field(default_factory=ProxyStatsMatcher)
    # Incremental xDS, as Istio's ISTIO_DELTA_XDS (on by default): a change sends the proxies
    # only what it changed. false: State of the World, every resource of each changed type.
    delta_xds: bool = True
    # The clusters a sidecar gets: "routed", those of the service ports its routes and tunnels
    # reach (``translate.clusters.routed_service_ports``); "all", Istio's set: every service it
    # sees, also one whose every request a VirtualService sends to the egress gateway.
    sidecar_clusters: Literal["routed", "all"] = "routed"
    # The control plane's monitoring port (metrics, merged proxy stats, sync state), istiod's
    # 15014; if it is taken, `up` says so and takes a free one (written to the runtime file).
    # 0: always a free one.
    monitoring_port: int = Field(default=15014, ge=0, le=65535)
    outbound_traffic_policy: OutboundTrafficPolicy = Field(default_factory=OutboundTrafficPolicy)
    gateways: list[GatewayProxy] = Field(default_factory=lambda: [default_egress_gateway()])
    workloads: list[WorkloadProxy] = Field(default_factory=lambda: [WorkloadProxy(name="sleep", service_account="sleep", labels={"app": "sleep"})])
    services: list[ExternalService] = Field(default_factory=list)

    @field_validator("access_log_format")
    @classmethod
    def _format_fits_encoding(cls, v: str, info: ValidationInfo) -> str:
        problem = access_log_format_problem(str(info.data.get("access_log_encoding")), v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _unique(self) -> MeshConfig:
        seen: set[tuple[str, str]] = set()
        proxies: list[GatewayProxy | WorkloadProxy] = [*self.gateways, *self.workloads]
        for p in proxies:
            key = (p.name, p.namespace)
            if key in seen:
                raise ValueError(f"proxy {p.name}.{p.namespace} is declared twice")
            seen.add(key)
        bound: dict[tuple[str, int], str] = {}
        for g in self.gateways:
            for i, addr in enumerate(g.replica_addresses):
                for port in g.ports:
                    other = bound.setdefault((addr, port.target_port), g.replica_name(i))
                    if other != g.replica_name(i):
                        raise ValueError(f"gateway {g.replica_name(i)} would listen on {addr}:{port.target_port}, "
                                         f"where {other} listens (replica i listens on address + i)")
        return self

    def external_port(self, port: int, host: str | None = None) -> int:
        if host is not None:
            mapped = self.external_port_map.get(f"{host}:{port}")
            if mapped is not None:
                return mapped
        return self.external_port_map.get(port, port)

    @field_validator("external_port_map")
    @classmethod
    def _port_keys(cls, v: dict[int | str, int]) -> dict[int | str, int]:
        out: dict[int | str, int] = {}
        for key, target in v.items():
            if not 0 < target <= 65535:
                raise ValueError(f"{key}: {target} is not a port")
            text = str(key)
            host, sep, port = text.rpartition(":")
            if not (port.isdigit() and 0 < int(port) <= 65535) or (sep and not host):
                raise ValueError(f"{key!r} is neither a port nor HOST:PORT")
            out[f"{host}:{int(port)}" if sep else int(port)] = target
        return out

    def gateway(self, name: str) -> GatewayProxy | None:
        return next((g for g in self.gateways if g.name == name), None)

    def workload(self, name: str) -> WorkloadProxy | None:
        return next((w for w in self.workloads if w.name == name), None)


def with_mesh_config(mesh: MeshConfig, text: MeshConfigText | None) -> MeshConfig:
    """The mesh with what Istio's mesh ConfigMap sets (it wins while applied, as editing Istio's
    ConfigMap changes a running mesh): the access log (``accessLogFile`` "" turns it off, any
    file on: exitgate writes it to the proxy's own log, which ``logs`` shows), its encoding and
    format. The outbound traffic policy is read where it is used (a Sidecar may override it)."""
    if text is None:
        return mesh
    update: dict[str, object] = {}
    if text.access_log_file is not None:
        update["access_log"] = bool(text.access_log_file)
    if text.access_log_encoding is not None:
        update["access_log_encoding"] = text.access_log_encoding
    if text.access_log_format is not None:
        update["access_log_format"] = text.access_log_format
    return mesh.model_copy(update=update) if update else mesh


def default_egress_gateway() -> GatewayProxy:
    return GatewayProxy(
        name="istio-egressgateway",
        namespace="istio-system",
        labels={"istio": "egressgateway", "app": "istio-egressgateway"},
        service_account="istio-egressgateway-service-account",
        ports=[
            ServicePortMap(port=80, target_port=8080, name="http2", protocol="HTTP2"),
            ServicePortMap(port=443, target_port=8443, name="https", protocol="HTTPS"),
        ],
    )


def load_mesh(path: Path | None) -> tuple[MeshConfig | None, list[Diagnostic]]:
    """The mesh file at ``path`` (defaults when None), or diagnostics naming file, line, field."""
    if path is None:
        return MeshConfig(), []
    try:
        doc = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except OSError as e:
        return None, [Diagnostic(dx.NOT_FOUND, Severity.ERROR, f"cannot read mesh file: {e}", file=str(path))]
    except Exception as e:
        return None, [Diagnostic(dx.YAML_SYNTAX, Severity.ERROR, f"invalid YAML: {e}", file=str(path))]
    try:
        return MeshConfig.model_validate(doc or {}), []
    except ValidationError as err:
        # The same codes as a resource's: an unknown field is EG0004 at its place, not EG0005.
        return None, sorted(pydantic_diagnostics(err, doc, (), str(path), None), key=lambda d: d.line or 0)
