"""The DestinationRule kind: traffic policies (load balancing, connection pools, outlier
detection, client-side TLS as Istio's ``ValidateTLS`` checks it, tunnels), per-port settings
and subsets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field

from exitgate.api.base import (
    AnyDuration,
    Duration,
    DurationOrOff,
    Issue,
    Path,
    Spec,
    SubsetName,
    Where,
    export_to_issues,
    host_problem,
    is_ip,
    labels_issues,
    warning,
)
from exitgate.api.networking.common import (
    PolicySelector,
    PortSelector,
    WildcardHost,
    _port_problem,
    partial_wildcard_unsupported,
)


class CookieAttribute(Spec):
    name: str
    value: str | None = None


class HTTPCookie(Spec):
    name: str = Field(min_length=1)
    path: str | None = None
    ttl: AnyDuration | None = None  # 0s is a session cookie; Istio's CRD checks no minimum here
    attributes: list[CookieAttribute] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        seen: dict[str, int] = {}
        for i, attribute in enumerate(self.attributes or []):
            if not attribute.name:
                out.append(Issue(("attributes", i, "name"), "a cookie attribute needs a name, like SameSite"))
            elif attribute.name in seen:
                out.append(Issue(("attributes", i, "name"), f"duplicate cookie attribute {attribute.name!r} "
                                                            f"(attributes[{seen[attribute.name]}] has it)"))
            seen.setdefault(attribute.name, i)
        return out


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
            out.append(warning(("minimumRingSize",), "minimumRingSize is deprecated; use ringHash.minimumRingSize"))
            if self.ring_hash is not None or self.maglev is not None:
                out.append(Issue(("minimumRingSize",), "minimumRingSize cannot be combined with ringHash or maglev; "
                                                       "set the ring size in ringHash"))
        return out


class LocalityDistribute(Spec):
    from_: str | None = Field(default=None, alias="from")
    to: dict[str, int] | None = None


class LocalityFailover(Spec):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


TOPOLOGY_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone")


def _failover_issues(failover: list[LocalityFailover] | None) -> list[Issue]:
    out = []
    for i, f in enumerate(failover or []):
        if f.from_ == f.to:
            out.append(Issue(("failover", i), "a failover must go to a different region"))
        elif "/" in (f.from_ or "") + (f.to or "") or "*" in (f.from_ or "") + (f.to or ""):
            out.append(Issue(("failover", i), "failover names regions only (no '/', no '*')"))
    return out


class LocalityLoadBalancerSetting(Spec):
    distribute: list[LocalityDistribute] | None = None
    failover: list[LocalityFailover] | None = None
    failover_priority: list[str] | None = None
    enabled: bool | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        """Istio's ``ValidateLocalityLbSetting`` (but its check that localities do not overlap)."""
        out = []
        if self.distribute and self.failover:
            return [Issue(("failover",), "set distribute or failover, not both")]
        if self.failover:
            for i, label in enumerate(self.failover_priority or []):
                if label in TOPOLOGY_LABELS:
                    return [Issue(("failoverPriority", i), f"failoverPriority cannot use the topology label {label} "
                                                           f"together with failover")]
        for i, d in enumerate(self.distribute or []):
            weights = list((d.to or {}).values())
            if any(not 1 <= w <= 100 for w in weights):
                out.append(Issue(("distribute", i, "to"), "locality weights must be 1-100"))
            elif sum(weights) != 100:
                out.append(Issue(("distribute", i, "to"), f"locality weights must add up to 100, not {sum(weights)}"))
        return out + _failover_issues(self.failover)


class ZoneAwareLoadBalancerSetting(Spec):
    enabled: bool | None = None
    failover: list[LocalityFailover] | None = None
    failover_priority: list[str] | None = None
    min_cluster_size: int | None = Field(default=None, ge=1)

    def issues(self, where: Where) -> Iterable[Issue]:
        """Istio's ``ValidateZoneAwareLbSetting``."""
        out = [Issue(("failoverPriority", i), f"failoverPriority of a zone aware load balancer cannot use the "
                                              f"topology label {label}: Envoy orders regions and zones itself")
               for i, label in enumerate(self.failover_priority or []) if label in TOPOLOGY_LABELS]
        return out + _failover_issues(self.failover)


class WarmupConfiguration(Spec):
    duration: Duration
    minimum_percent: float | None = Field(default=None, ge=0, le=100)
    aggression: float | None = Field(default=None, gt=0)


class LoadBalancerSettings(Spec):
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"] | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None
    warmup: WarmupConfiguration | None = None

    UNSUPPORTED = frozenset({"consistent_hash", "locality_lb_setting", "zone_aware_lb_setting", "warmup_duration_secs",
                             "warmup"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        if self.simple == "PASSTHROUGH":
            return [("simple", "PASSTHROUGH load balancing is not supported by exitgate yet")]
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.simple is not None and self.consistent_hash is not None:
            out.append(Issue(("consistentHash",), "a loadBalancer takes simple or consistentHash, not both"))
        if self.locality_lb_setting is not None and self.zone_aware_lb_setting is not None:
            out.append(Issue(("zoneAwareLbSetting",), "set localityLbSetting or zoneAwareLbSetting, not both"))
        if self.warmup_duration_secs is not None and self.warmup is not None:
            out.append(Issue(("warmup",), "set warmup or warmupDurationSecs, not both"))
        return out

    def failover_issues(self, outlier: OutlierDetection | None) -> list[Issue]:
        """Istio's warning that failover needs outlier detection (to notice the unhealthy)."""
        if outlier is not None:
            return []
        return [warning((field,), "failover needs outlierDetection in the same traffic policy to eject unhealthy "
                                  "endpoints; without it failover never happens")
                for field, lb in (("localityLbSetting", self.locality_lb_setting),
                                  ("zoneAwareLbSetting", self.zone_aware_lb_setting))
                if lb is not None and (lb.failover or lb.failover_priority)]


class TcpKeepalive(Spec):
    probes: int | None = Field(default=None, ge=0, le=4294967295)
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(Spec):
    max_connections: int | None = Field(default=None, ge=0)
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: DurationOrOff | None = None  # 0s turns it off


class ConnectionKeepalive(Spec):
    interval: Duration | None = None
    timeout: Duration | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return [Issue((), f"http2KeepAlive needs {name} (a duration, like 10s)")
                for name, value in (("interval", self.interval), ("timeout", self.timeout)) if value is None]


class HTTPSettings(Spec):
    http1_max_pending_requests: int | None = Field(default=None, ge=0)
    http2_max_requests: int | None = Field(default=None, ge=0)
    max_requests_per_connection: int | None = Field(default=None, ge=0)
    max_retries: int | None = Field(default=None, ge=0)
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: int | None = Field(default=None, ge=0)
    http2_keep_alive: ConnectionKeepalive | None = None

    UNSUPPORTED = frozenset({"http2_keep_alive"})

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
    outlier_detection_http_error_codes: list[Annotated[int, Field(ge=100, le=599)]] | None = None

    UNSUPPORTED = frozenset({"outlier_detection_http_error_codes"})

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.consecutive_errors:
            # Istio no longer reads it either.
            out.append(warning(("consecutiveErrors",), "consecutiveErrors is deprecated and has no effect; use "
                                                       "consecutiveGatewayErrors or consecutive5xxErrors"))
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


class RetryBudget(Spec):
    percent: float | None = Field(default=None, ge=0, le=100)
    min_retry_concurrency: int | None = Field(default=None, ge=0, le=4294967295)
    budget_interval: AnyDuration | None = None


class PortTrafficPolicy(Spec):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.port is None:
            out.append(Issue(("port",), "a portLevelSettings entry needs port: {number: N}"))
        if not (self.load_balancer or self.connection_pool or self.outlier_detection or self.tls):
            out.append(Issue((), "a portLevelSettings entry needs at least one of loadBalancer, connectionPool, "
                                 "outlierDetection or tls"))
        if self.load_balancer is not None:
            out += [Issue(("loadBalancer",) + i.path, i.message, i.severity)
                    for i in self.load_balancer.failover_issues(self.outlier_detection)]
        return out


class TrafficPolicy(Spec):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None

    UNSUPPORTED = frozenset({"tunnel", "proxy_protocol", "retry_budget"})

    def issues(self, where: Where) -> Iterable[Issue]:
        if not self.model_fields_set:
            return [Issue((), "trafficPolicy is empty; set loadBalancer, connectionPool, outlierDetection, tls, "
                              "portLevelSettings, tunnel, proxyProtocol or retryBudget, or remove it")]
        if self.tunnel is not None and self.proxy_protocol is not None:
            return [Issue(("proxyProtocol",), "tunnel and proxyProtocol cannot be set together")]
        if self.load_balancer is not None:
            return [Issue(("loadBalancer",) + i.path, i.message, i.severity)
                    for i in self.load_balancer.failover_issues(self.outlier_detection)]
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

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        return partial_wildcard_unsupported(("host",), self.host)

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
