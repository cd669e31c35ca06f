"""The intermediate representation: what one proxy must do, in domain terms, as frozen dataclasses.

translate/ builds it from the configuration snapshot (pure); envoy/ turns it into Envoy protos
(pure). Nothing here knows about protobuf, sockets or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class TlsMode(str, Enum):
    DISABLE = "DISABLE"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"


class DiscoveryType(str, Enum):
    STATIC = "STATIC"
    STRICT_DNS = "STRICT_DNS"
    LOGICAL_DNS = "LOGICAL_DNS"


@dataclass(frozen=True)
class SanMatch:
    """A subject-alt-name the peer certificate must carry. ``kind`` is ``DNS`` or ``URI``."""

    kind: str
    value: str


@dataclass(frozen=True)
class UpstreamTls:
    """TLS a cluster originates. Secret fields are SDS names (see names.py)."""

    mode: TlsMode
    sni: str | None = None
    client_cert_secret: str | None = None
    validation_secret: str | None = None
    san_matches: tuple[SanMatch, ...] = ()
    insecure_skip_verify: bool = False
    alpn: tuple[str, ...] = ()
    # TLS 1.3 allowed; Envoy's upstream default caps at 1.2.
    max_tls13: bool = True


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


@dataclass(frozen=True)
class Cluster:
    name: str
    discovery: DiscoveryType
    endpoints: tuple[Endpoint, ...]
    lb_policy: str = "ROUND_ROBIN"
    tls: UpstreamTls | None = None
    http2: bool = False
    connect_timeout_s: float = 10.0
    # Bound connection lifetime so pooled connections pick up rotated certificates.
    max_connection_duration_s: float | None = None
    # A digest of the user-provided secrets (Secrets, files) the cluster's TLS uses, filled in
    # when the secrets are resolved. When one changes, the cluster changes with it, and Envoy
    # drains the pooled connections made with the old certificate.
    credential_version: str | None = None


@dataclass(frozen=True)
class WeightedCluster:
    cluster: str
    weight: int


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str = "/"
    clusters: tuple[WeightedCluster, ...] = ()
    # A route with no clusters answers directly with this status (e.g. 404, 502).
    direct_status: int | None = None
    direct_body: str | None = None
    # The match is the whole path (VirtualService ``uri.exact``) rather than a prefix.
    exact: bool = False


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@dataclass(frozen=True)
class DownstreamTls:
    cert_secret: str
    validation_secret: str | None
    require_client_cert: bool
    alpn: tuple[str, ...] = ("h2", "http/1.1")
    # For ISTIO_MUTUAL: the client's certificate must carry a SPIFFE URI of this trust domain.
    spiffe_trust_domain: str | None = None


@dataclass(frozen=True)
class HttpListener:
    name: str
    address: str
    port: int
    route_config: str
    stat_prefix: str
    tls: DownstreamTls | None = None
    access_log: bool = True
    # Gateways match virtual hosts on the host alone; sidecars need the port to tell services apart.
    ignore_port_in_host: bool = False


@dataclass(frozen=True)
class SecretData:
    """A secret the control plane serves by SDS. Exactly one of the two shapes is filled:
    a certificate with its key, or a validation context (CA bundle, optional CRL)."""

    name: str
    cert_pem: bytes | None = None
    key_pem: bytes | None = field(default=None, repr=False)
    ca_pem: bytes | None = None
    crl_pem: bytes | None = None


@dataclass(frozen=True)
class ProxyConfig:
    """Everything one proxy is told by xDS. Secrets named here but not in ``secrets`` are the
    control plane's own (workload certificate, mesh root), filled in by the xDS layer."""

    listeners: tuple[HttpListener, ...]
    route_configs: tuple[RouteConfig, ...]
    clusters: tuple[Cluster, ...]
    secret_names: tuple[str, ...]
    secrets: tuple[SecretData, ...] = ()
