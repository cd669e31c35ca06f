"""The intermediate representation: what one proxy must do, in domain terms, as frozen dataclasses.

translate/ builds it from the configuration snapshot (pure); envoy/ turns it into Envoy protos
(pure). Nothing here knows about protobuf, sockets or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar


class TlsMode(str, Enum):
    DISABLE = "DISABLE"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"


class DiscoveryType(str, Enum):
    STATIC = "STATIC"
    STRICT_DNS = "STRICT_DNS"
    LOGICAL_DNS = "LOGICAL_DNS"
    # Resolves whichever host the request names (Envoy's dynamic forward proxy): the sidecar's
    # PassthroughCluster for ALLOW_ANY, where a forward proxy has no original destination.
    DYNAMIC_FORWARD_PROXY = "DYNAMIC_FORWARD_PROXY"
    # The destination the captured connection was headed for (Istio's PassthroughCluster and
    # resolution NONE, with capture).
    ORIGINAL_DST = "ORIGINAL_DST"


C = TypeVar("C")


def _hash_once(cls: type[C]) -> type[C]:
    """A frozen dataclass's hash walks every field, every time; the proto memo hashes each
    cluster and virtual host at every push (tens of thousands), so the big nodes keep theirs."""
    by_fields = cls.__hash__

    def __hash__(self: C) -> int:
        try:
            cached: int = self.__dict__["_hash"]
            return cached
        except KeyError:
            value: int = by_fields(self)
            object.__setattr__(self, "_hash", value)
            return value

    cls.__hash__ = __hash__  # type: ignore[assignment]
    return cls


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


_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class CircuitBreakers:
    """A cluster's limits (Envoy's default-priority thresholds). Unlimited unless a
    DestinationRule's connectionPool lowers one: Envoy's own defaults (1024 connections, 3
    parallel retries) would cut traffic during endpoint churn, so Istio writes the maximum."""

    max_connections: int = _UINT32_MAX
    max_pending_requests: int = _UINT32_MAX
    max_requests: int = _UINT32_MAX
    max_retries: int = _UINT32_MAX


@dataclass(frozen=True)
class TcpKeepalive:
    """SO_KEEPALIVE on upstream connections; None leaves the operating system's value."""

    probes: int | None = None
    time_s: int | None = None
    interval_s: int | None = None


@dataclass(frozen=True)
class OutlierDetection:
    """Passive health checking: eject an endpoint after consecutive failures. None leaves
    Envoy's default (5 consecutive 5xx; gateway and local-origin failures not counted)."""

    consecutive_5xx: int | None = None
    consecutive_gateway_failure: int | None = None
    interval_s: float | None = None
    base_ejection_time_s: float | None = None
    max_ejection_percent: int | None = None
    # Connect failures and timeouts are counted apart from the upstream's responses.
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failure: int | None = None


@dataclass(frozen=True)
class WorkloadLabels:
    """Who a workload is, in the terms of Istio's standard metrics (its node metadata and pod
    labels): ``source_*`` at its own proxy, ``destination_*`` at a proxy that calls it."""

    workload: str
    namespace: str
    principal: str = ""
    app: str = ""
    version: str = ""
    canonical_service: str = ""
    canonical_revision: str = "latest"
    cluster_id: str = "Kubernetes"


@dataclass(frozen=True)
class AccessLogFormat:
    """Istio's ``accessLogEncoding`` and ``accessLogFormat``: TEXT with a format string, or JSON
    with a JSON object (as text, so the IR stays hashable) of fields to operators."""

    encoding: str  # "TEXT" or "JSON"
    format: str


@dataclass(frozen=True)
class Telemetry:
    """Istio's standard metrics at one proxy (``istio_requests_total`` and the rest), computed
    by Envoy per request: the proxy's own labels, and whether a request that reached no service
    is named by its Host (sidecars) or ``unknown`` (gateways, as Istio's)."""

    source: WorkloadLabels
    host_fallback: bool
    # The destination labels every cluster of the proxy gives the same value (``labels``):
    # written as constants, not read from each cluster's metadata, which leaves them out.
    shared: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ServiceLabels:
    """The service a cluster reaches, as Istio's metrics name it (Istio's cluster metadata
    ``istio.services``): a ServiceEntry host is its own name; a Kubernetes Service has its short
    name. ``workload``: the mesh workload behind it, when exitgate runs it (a gateway)."""

    host: str
    name: str
    namespace: str
    workload: WorkloadLabels | None = None
    # The SPIFFE ID the service's proxies present (the mesh's mTLS verifies it).
    principal: str = ""


@_hash_once
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
    # None: no limits written (Envoy's defaults).
    circuit_breakers: CircuitBreakers | None = None
    tcp_keepalive: TcpKeepalive | None = None
    # Upstream connections idle this long are closed (Envoy's default: 1 hour).
    idle_timeout_s: float | None = None
    max_requests_per_connection: int | None = None
    # HTTP/2 only.
    max_concurrent_streams: int | None = None
    # Speak to the upstream whichever HTTP version the downstream request used.
    use_client_protocol: bool = False
    outlier_detection: OutlierDetection | None = None
    # Below this percentage of healthy endpoints Envoy ignores health (panic mode); 0 turns it off.
    healthy_panic_threshold: float | None = None
    # What Istio's metrics call the destination (cluster metadata); None: not a service's cluster.
    service: ServiceLabels | None = None
    # The DestinationRule that shaped the cluster, "namespace/name" (Istio's ``istio.config``).
    destination_rule: str | None = None


@dataclass(frozen=True)
class WeightedCluster:
    cluster: str
    weight: int


# --- HTTP route features (VirtualService http[]), as Istio's route.go renders them ---------------


@dataclass(frozen=True)
class RouteHeaderMatch:
    """A request header a route requires (``:method``, ``:authority`` and ``:scheme`` included);
    ``match`` None: the header is present. ``invert``: Istio's ``withoutHeaders``."""

    name: str
    match: StringMatch | None
    invert: bool = False
    # An inverted value match also matches a request without the header (Istio sets this).
    treat_missing_as_empty: bool = False


@dataclass(frozen=True)
class QueryParamMatch:
    """A query parameter a route requires; ``match`` None: the parameter is present."""

    name: str
    match: StringMatch | None


@dataclass(frozen=True)
class HeaderValue:
    """A header to add: ``append`` True is Istio's ``add`` (APPEND_IF_EXISTS_OR_ADD), False its
    ``set`` (OVERWRITE_IF_EXISTS_OR_ADD)."""

    name: str
    value: str
    append: bool = False


@dataclass(frozen=True)
class HeaderOps:
    request_add: tuple[HeaderValue, ...] = ()
    request_remove: tuple[str, ...] = ()
    response_add: tuple[HeaderValue, ...] = ()
    response_remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    """Envoy's route retry policy. ``previous_hosts``: retry on another host than the ones tried
    (Istio's default); ``remote_localities``: Envoy's previous_priorities retry priority."""

    attempts: int
    retry_on: str
    retriable_status_codes: tuple[int, ...] = ()
    per_try_timeout_s: float | None = None
    previous_hosts: bool = True
    host_selection_retry_max_attempts: int = 5
    remote_localities: bool = False
    backoff_s: float | None = None


@dataclass(frozen=True)
class FaultInjection:
    """Envoy's HTTP fault filter, per route. Percentages are of requests (0-100, fractional)."""

    delay_s: float | None = None
    delay_percent: float = 0.0
    abort_http_status: int | None = None
    abort_grpc_status: int | None = None
    abort_percent: float = 0.0


@dataclass(frozen=True)
class Redirect:
    """Envoy's redirect action. ``path``/``host``/``scheme`` None keep the request's; ``port``
    None keeps Envoy's default (the scheme's)."""

    path: str | None = None
    host: str | None = None
    port: int | None = None
    scheme: str | None = None
    code: int = 301


@dataclass(frozen=True)
class Rewrite:
    """Request rewrites before forwarding: a path prefix, or a regex substitution of the path,
    and the authority (Host)."""

    prefix: str | None = None
    regex: str | None = None
    substitution: str | None = None
    authority: str | None = None


@dataclass(frozen=True)
class Mirror:
    """Copy ``percent`` of the requests to ``cluster``, answers ignored (Envoy shadowing)."""

    cluster: str
    percent: float = 100.0


@_hash_once
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
    # The match is this RE2 regex over the whole path (``uri.regex``); ``prefix`` is then unused.
    path_regex: str | None = None
    # The path is matched case-insensitively (Istio's ``ignoreUriCase``).
    ignore_case: bool = False
    headers: tuple[RouteHeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    # Route timeout in seconds; 0 disables it (Istio's default when ``timeout`` is unset).
    timeout_s: float = 0.0
    # None: no retries. Routes from a VirtualService carry Istio's default policy unless
    # ``retries.attempts`` is 0 (translate/route_features.py).
    retry: RetryPolicy | None = None
    fault: FaultInjection | None = None
    header_ops: HeaderOps | None = None
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    mirrors: tuple[Mirror, ...] = ()
    # A direct response body given as base64 bytes (``directResponse.body.bytes``).
    direct_body_base64: str | None = None
    # Envoy's per-route stats prefix (``match[].statPrefix``).
    stat_prefix: str | None = None
    # The VirtualService the route comes from, "namespace/name" (Istio's route metadata).
    virtual_service: str | None = None


@_hash_once
@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    # HTTP CONNECT to this host:port (a workload's https_proxy): the tunnel's bytes go, as TCP,
    # to this cluster; or the CONNECT is answered with ``connect_status`` (502 in REGISTRY_ONLY).
    connect_clusters: tuple[WeightedCluster, ...] = ()
    connect_status: int | None = None


@_hash_once
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
    # Envoy RBAC HTTP filters, in the order they run (translate/authz.py: Istio's AUDIT, DENY, ALLOW).
    rbac: tuple[RbacFilter, ...] = ()
    # A route of this listener goes to a DYNAMIC_FORWARD_PROXY cluster, which needs its filter.
    dynamic_forward_proxy: bool = False
    # A route of this listener injects faults (``Route.fault``), which needs Envoy's fault filter.
    fault_injection: bool = False
    # The listener accepts HTTP CONNECT (a forward proxy's tunnels for HTTPS and other TCP).
    connect: bool = False
    # False for a captured port (Istio's ``0.0.0.0_80``): virtualOutbound hands connections to it.
    bind_to_port: bool = True
    # Istio's standard metrics, set for every listener of a proxy (translate.telemetry).
    # The access log's format when not Istio's default text (translate.telemetry sets it).
    log_format: AccessLogFormat | None = None
    telemetry: Telemetry | None = None


@dataclass(frozen=True)
class SniChain:
    """Connections whose TLS ClientHello names one of ``server_names`` go, as TCP, to the
    clusters (a VirtualService's ``tls`` route)."""

    name: str
    server_names: tuple[str, ...]
    clusters: tuple[WeightedCluster, ...]
    # Captured TCP: the chain takes connections to these addresses/CIDRs (a ServiceEntry's
    # ``addresses``); with no server names and no CIDRs it takes the whole port.
    destination_cidrs: tuple[str, ...] = ()
    # A cluster resolves whichever host was asked (DYNAMIC_DNS): Envoy's SNI dynamic forward
    # proxy resolves the SNI first and connects to this port.
    sni_dynamic_port: int | None = None


@dataclass(frozen=True)
class TlsPassthroughListener:
    """A listener that reads the SNI of the client's own TLS and passes the connection through
    untouched (a Gateway server with ``tls.mode: PASSTHROUGH``). A name no chain lists is
    refused: nothing leaves to an unknown destination."""

    name: str
    address: str
    port: int
    stat_prefix: str
    chains: tuple[SniChain, ...]
    access_log: bool = True
    # AuthorizationPolicy as Envoy's RBAC network filters (translate/authz.py with tcp=True), in
    # every chain before tcp_proxy, in order: AUDIT, DENY, ALLOW.
    rbac: tuple[RbacFilter, ...] = ()
    # A TLS server with ISTIO_MUTUAL: the mesh's mTLS is terminated first (chains match its SNI),
    # then the inner bytes (the workload's own TLS) go on as TCP by the ``tcp`` routes.
    tls: DownstreamTls | None = None
    # A captured port (``0.0.0.0_443``): not bound, handed connections by virtualOutbound; what
    # no chain takes goes to ``default_cluster`` (PassthroughCluster or BlackHoleCluster).
    bind_to_port: bool = True
    default_cluster: str | None = None
    # Istio's standard metrics, set for every listener of a proxy (translate.telemetry).
    # The access log's format when not Istio's default text (translate.telemetry sets it).
    log_format: AccessLogFormat | None = None
    telemetry: Telemetry | None = None


@dataclass(frozen=True)
class CaptureListener:
    """Istio's ``virtualOutbound`` (port 15001) bound inside the workload's network namespace:
    the captured connection's original destination is restored and the connection handed to
    the listener for its port; what no listener takes is sniffed: HTTP gets ``http`` (the
    sidecar's route table, so an unlisted port routes and refuses as the forward proxy does),
    anything else goes to ``default_cluster`` as TCP."""

    name: str
    address: str
    port: int
    netns: str
    default_cluster: str
    access_log: bool = True
    http: HttpListener | None = None
    # Istio's standard metrics, set for every listener of a proxy (translate.telemetry).
    # The access log's format when not Istio's default text (translate.telemetry sets it).
    log_format: AccessLogFormat | None = None
    telemetry: Telemetry | None = None


@dataclass(frozen=True)
class DnsListener:
    """Istio's DNS proxy (port 15053) inside the workload's namespace: the hosts the sidecar
    knows get their addresses (``table``), other names are resolved upstream (``resolvers``,
    the system's when empty)."""

    name: str
    address: str
    port: int
    netns: str
    table: tuple[tuple[str, tuple[str, ...]], ...]
    resolvers: tuple[tuple[str, int], ...] = ()


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
    tls_passthrough_listeners: tuple[TlsPassthroughListener, ...] = ()
    # Transparent capture (a sidecar whose workload runs in its own network namespace).
    capture_listeners: tuple[CaptureListener | DnsListener, ...] = ()
    # The metric labels the clusters share (``Telemetry.shared``), left out of their metadata.
    shared_labels: tuple[tuple[str, str], ...] = ()


# --- RBAC (AuthorizationPolicy) -------------------------------------------------------------------
# Istio's authorization model as Envoy's RBAC filter runs it: a filter has an action and named
# policies; a policy matches when one of its permissions (what the request asks for) and one of
# its principals (who asks) match. The matchers below are the leaves and combinators Istio's
# generators emit (pilot/pkg/security/authz/model); envoy/filters.py renders them.


class RbacAction(str, Enum):
    ALLOW = "ALLOW"  # the request passes only if a policy matches
    DENY = "DENY"  # the request is refused if a policy matches
    LOG = "LOG"  # Istio's AUDIT: a match is recorded, nothing is refused


class StringMatchKind(str, Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEX = "safe_regex"  # RE2, matched against the whole value


@dataclass(frozen=True)
class StringMatch:
    kind: StringMatchKind
    value: str
    ignore_case: bool = False


@dataclass(frozen=True)
class MatchAny:
    """Matches every request."""


@dataclass(frozen=True)
class MatchAll:
    """Every one of ``items`` matches (Envoy ``and_rules`` / ``and_ids``)."""

    items: tuple[RbacMatch, ...]


@dataclass(frozen=True)
class MatchOneOf:
    """At least one of ``items`` matches (Envoy ``or_rules`` / ``or_ids``)."""

    items: tuple[RbacMatch, ...]


@dataclass(frozen=True)
class MatchNot:
    item: RbacMatch


@dataclass(frozen=True)
class HeaderMatch:
    """A request header (``:authority``, ``:method`` or any other); ``match`` None: present."""

    name: str
    match: StringMatch | None


@dataclass(frozen=True)
class PathMatch:
    """The request path without the query string (Envoy ``url_path``)."""

    match: StringMatch


@dataclass(frozen=True)
class PathTemplate:
    """Envoy's uri_template syntax (``*`` one segment, ``**`` any), from Istio's ``{*}``/``{**}``."""

    template: str


@dataclass(frozen=True)
class DestinationPort:
    port: int


@dataclass(frozen=True)
class DestinationIp:
    cidr: str  # "10.0.0.0/16", "10.0.0.1/32"


@dataclass(frozen=True)
class ServerName:
    """The TLS SNI of the downstream connection."""

    match: StringMatch


@dataclass(frozen=True)
class PeerPrincipal:
    """The peer certificate's identity (its SPIFFE URI SAN; Envoy ``authenticated``)."""

    match: StringMatch


@dataclass(frozen=True)
class DirectRemoteIp:
    """The address of the connection's peer (Istio ``ipBlocks``, ``source.ip``)."""

    cidr: str


@dataclass(frozen=True)
class RemoteIp:
    """The original client, from X-Forwarded-For (Istio ``remoteIpBlocks``, ``remote.ip``)."""

    cidr: str


# Permissions use MatchAny/All/OneOf/Not, HeaderMatch, PathMatch, PathTemplate, DestinationPort,
# DestinationIp and ServerName; principals use the combinators, HeaderMatch, PeerPrincipal,
# DirectRemoteIp and RemoteIp (envoy/filters.py refuses a leaf on the wrong side).
RbacMatch = (MatchAny | MatchAll | MatchOneOf | MatchNot | HeaderMatch | PathMatch | PathTemplate
             | DestinationPort | DestinationIp | ServerName | PeerPrincipal | DirectRemoteIp | RemoteIp)


@dataclass(frozen=True)
class RbacPolicy:
    """One rule of one AuthorizationPolicy; ``name`` is Istio's (names.rbac_policy_name)."""

    name: str
    permissions: tuple[RbacMatch, ...]
    principals: tuple[RbacMatch, ...]


@dataclass(frozen=True)
class RbacFilter:
    """One Envoy RBAC HTTP filter. ``policies`` None: nothing enforced (only dry-run policies
    apply); an empty tuple with ALLOW refuses every request. ``shadow`` holds the dry-run
    (``istio.io/dry-run``) policies, evaluated and counted but never enforced."""

    action: RbacAction
    policies: tuple[RbacPolicy, ...] | None
    shadow: tuple[RbacPolicy, ...] | None = None
