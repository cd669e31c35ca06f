"""Istio ``networking.istio.io`` resources (v1alpha3, v1beta1, v1): ServiceEntry, Gateway,
VirtualService, DestinationRule, as typed, immutable models.

Field names follow Istio's API (camelCase in YAML). Every field Istio defines is accepted so that
Istio's YAML parses; the ones exitgate does not act on yet are listed in ``UNSUPPORTED`` and
reported by the loader.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from exitgate.api.base import Spec

def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


# Istio parses protocol names case-insensitively ("http" is HTTP).
Protocol = Annotated[
    Literal["HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "MYSQL", "REDIS", "UDP"],
    BeforeValidator(_upper),
]
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})


class Port(Spec):
    number: int = Field(ge=1, le=65535)
    protocol: Protocol
    name: str = Field(min_length=1)
    target_port: int | None = Field(default=None, ge=1, le=65535)

    UNSUPPORTED = frozenset({"target_port"})


class ServicePort(Spec):
    number: int = Field(ge=1, le=65535)
    protocol: Protocol | None = None
    name: str = Field(min_length=1)
    target_port: int | None = Field(default=None, ge=1, le=65535)

    UNSUPPORTED = frozenset({"target_port"})


class WorkloadEntry(Spec):
    address: str | None = None
    ports: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    network: str | None = None
    locality: str | None = None
    weight: int | None = Field(default=None, ge=0)
    service_account: str | None = None

    UNSUPPORTED = frozenset({"network", "locality", "weight", "service_account", "labels"})


class WorkloadSelector(Spec):
    labels: dict[str, str] = Field(default_factory=dict)


class ServiceEntrySpec(Spec):
    hosts: list[str] = Field(min_length=1)
    addresses: list[str] | None = None
    ports: list[ServicePort] | None = None
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"] | None = None
    endpoints: list[WorkloadEntry] | None = None
    workload_selector: WorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None

    UNSUPPORTED = frozenset({"addresses", "workload_selector", "subject_alt_names"})

    def unsupported_values(self) -> list[tuple[str, str]]:
        if self.resolution in (None, "NONE"):
            return [(
                "resolution",
                "resolution NONE needs transparent traffic capture, which exitgate does not do; "
                "use DNS (or STATIC with endpoints)",
            )]
        return []

    @model_validator(mode="after")
    def _endpoints_match_resolution(self) -> ServiceEntrySpec:
        if self.resolution == "STATIC" and not self.endpoints:
            raise ValueError("resolution STATIC requires endpoints")
        return self


class ServerTLSSettings(Spec):
    https_redirect: bool | None = None
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"] | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: str | None = None
    max_protocol_version: str | None = None
    cipher_suites: list[str] | None = None

    UNSUPPORTED = frozenset({
        "https_redirect", "server_certificate", "private_key", "ca_certificates", "ca_crl",
        "credential_name", "credential_names", "subject_alt_names", "verify_certificate_spki",
        "verify_certificate_hash", "min_protocol_version", "max_protocol_version", "cipher_suites",
    })

    def unsupported_values(self) -> list[tuple[str, str]]:
        if self.mode not in (None, "ISTIO_MUTUAL"):
            return [("mode", f"gateway server TLS mode {self.mode} is not supported by exitgate yet "
                             "(ISTIO_MUTUAL and plain HTTP servers are)")]
        return []


class Server(Spec):
    port: Port
    bind: str | None = None
    hosts: list[str] = Field(min_length=1)
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None

    UNSUPPORTED = frozenset({"bind", "default_endpoint"})

    def unsupported_values(self) -> list[tuple[str, str]]:
        if self.port.protocol not in HTTP_PROTOCOLS | {"HTTPS"}:
            return [("port", f"gateway server protocol {self.port.protocol} is not supported by "
                             "exitgate yet (HTTP, HTTP2, GRPC and HTTPS are)")]
        if self.port.protocol == "HTTPS" and self.tls is None:
            return [("tls", "an HTTPS server needs tls settings")]
        return []


class GatewaySpec(Spec):
    selector: dict[str, str] = Field(default_factory=dict)
    servers: list[Server] = Field(min_length=1)


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


class PortSelector(Spec):
    number: int = Field(ge=1, le=65535)


class Destination(Spec):
    host: str = Field(min_length=1)
    subset: str | None = None
    port: PortSelector | None = None


class HTTPRouteDestination(Spec):
    destination: Destination
    weight: int | None = Field(default=None, ge=0, le=100)
    headers: dict[str, Any] | None = None

    UNSUPPORTED = frozenset({"headers"})


class HTTPRoute(Spec):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: dict[str, Any] | None = None
    direct_response: dict[str, Any] | None = None
    delegate: dict[str, Any] | None = None
    rewrite: dict[str, Any] | None = None
    timeout: str | None = None
    retries: dict[str, Any] | None = None
    fault: dict[str, Any] | None = None
    mirror: dict[str, Any] | None = None
    mirrors: list[dict[str, Any]] | None = None
    mirror_percentage: dict[str, Any] | None = None
    mirror_percent: int | None = None
    cors_policy: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None

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


class VirtualServiceSpec(Spec):
    # Required (delegate VirtualServices, which have none, are not supported): a missing list is
    # reported as a missing field at spec.hosts, not as a bad value of spec.
    hosts: list[str] = Field(min_length=1)
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[dict[str, Any]] | None = None
    tcp: list[dict[str, Any]] | None = None
    export_to: list[str] | None = None

    UNSUPPORTED = frozenset({"tls", "tcp"})


class LoadBalancerSettings(Spec):
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"] | None = None
    consistent_hash: dict[str, Any] | None = None
    locality_lb_setting: dict[str, Any] | None = None
    warmup_duration_secs: str | None = None
    warmup: dict[str, Any] | None = None

    UNSUPPORTED = frozenset({"consistent_hash", "locality_lb_setting", "warmup_duration_secs", "warmup"})

    def unsupported_values(self) -> list[tuple[str, str]]:
        if self.simple == "PASSTHROUGH":
            return [("simple", "PASSTHROUGH load balancing is not supported by exitgate yet")]
        return []


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

    @model_validator(mode="after")
    def _consistent(self) -> ClientTLSSettings:
        # Istio's validation of ClientTLSSettings.
        if self.credential_name and (self.client_certificate or self.private_key or self.ca_certificates):
            raise ValueError("credentialName cannot be combined with clientCertificate, privateKey or caCertificates")
        if self.mode == "MUTUAL" and not self.credential_name and not (self.client_certificate and self.private_key):
            raise ValueError("MUTUAL needs credentialName, or clientCertificate and privateKey")
        if self.insecure_skip_verify and (self.ca_certificates or self.subject_alt_names or self.ca_crl):
            raise ValueError("insecureSkipVerify cannot be combined with caCertificates, subjectAltNames or caCrl")
        return self


class PortTrafficPolicy(Spec):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: dict[str, Any] | None = None
    outlier_detection: dict[str, Any] | None = None
    tls: ClientTLSSettings | None = None

    UNSUPPORTED = frozenset({"connection_pool", "outlier_detection"})


class TrafficPolicy(Spec):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: dict[str, Any] | None = None
    outlier_detection: dict[str, Any] | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None
    tunnel: dict[str, Any] | None = None
    proxy_protocol: dict[str, Any] | None = None
    retry_budget: dict[str, Any] | None = None

    UNSUPPORTED = frozenset({"connection_pool", "outlier_detection", "tunnel", "proxy_protocol", "retry_budget"})


class Subset(Spec):
    name: str = Field(min_length=1)
    labels: dict[str, str] | None = None
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(Spec):
    host: str = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None
    workload_selector: WorkloadSelector | None = None

    UNSUPPORTED = frozenset({"workload_selector"})
