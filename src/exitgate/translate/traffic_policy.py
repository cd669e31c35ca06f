"""DestinationRule traffic policy for one cluster (subset and port), and what its connection
pool, outlier detection and load balancer settings become, as Istio translates them.

The layering is Istio's (``util.MergeSubsetTrafficPolicy``, ``GetPortLevelTrafficPolicy``,
``model.MergeTrafficPolicy``), implemented once here for the translator and the analyzers:

1. the top-level ``trafficPolicy``; if it has a ``portLevelSettings`` entry for the port (the
   first one wins), that entry *replaces* the policy whole: a field the entry omits takes its
   default, it is not inherited from the top level (Istio's documented rule);
2. the subset's ``trafficPolicy``, resolved the same way, then overrides: field by field (only
   the fields it sets) when it has no entry for the port; whole when it has one.

The Envoy mapping follows ``cluster_traffic_policy.go`` (``applyConnectionPool``,
``applyH2Upgrade``, ``applyOutlierDetection``, ``applyLoadBalancer``), including where Istio
cannot tell an unset number from 0 (a 0 means "Istio's default").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exitgate import ir
from exitgate.api.base import _DURATION_PART
from exitgate.api.networking import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    DestinationRuleSpec,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    TrafficPolicy,
)

Path = tuple[str | int, ...]

# Istio's MeshConfig.connectTimeout default, written on every cluster a DestinationRule does not
# give a tcp.connectTimeout.
DEFAULT_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ClusterPolicy:
    """What a DestinationRule says for one cluster (subset and port), after Istio's layering:
    each component of the policy that applies (None: Istio's default), and where in the rule the
    TLS settings are written (YAML path, empty if nowhere)."""

    tls: ClientTLSSettings | None = None
    tls_path: Path = ()
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None

    @property
    def lb(self) -> str:
        """Envoy's ``lb_policy`` for ``loadBalancer.simple``."""
        simple = self.load_balancer.simple if self.load_balancer is not None else None
        # LEAST_CONN is Istio's deprecated name for LEAST_REQUEST; unset (or UNSPECIFIED) is
        # Istio's defaultLBAlgorithm, LEAST_REQUEST.
        return {"ROUND_ROBIN": "ROUND_ROBIN", "RANDOM": "RANDOM"}.get(simple or "", "LEAST_REQUEST")


def _for_port(policy: TrafficPolicy | None, port: int | None, base: Path) -> tuple[ClusterPolicy | None, bool]:
    """Istio's ``GetPortLevelTrafficPolicy``: (the policy for ``port``, whether a port-level
    entry supplied it)."""
    if policy is None:
        return None, False
    chosen: TrafficPolicy | PortTrafficPolicy = policy
    where, port_level = base, False
    for k, pls in enumerate(policy.port_level_settings or []):
        if port is not None and pls.port is not None and pls.port.number == port:
            chosen, where, port_level = pls, base + ("portLevelSettings", k), True
            break
    return ClusterPolicy(
        tls=chosen.tls,
        tls_path=where + ("tls",) if chosen.tls is not None else (),
        load_balancer=chosen.load_balancer,
        connection_pool=chosen.connection_pool,
        outlier_detection=chosen.outlier_detection,
    ), port_level


def cluster_policy(dr: DestinationRuleSpec | None, subset: str, port: int | None) -> ClusterPolicy:
    """The policy for the cluster of ``subset`` ("" for none) and ``port`` (None: any port),
    layered as Istio's ``MergeSubsetTrafficPolicy`` does (see the module's docstring)."""
    if dr is None:
        return ClusterPolicy()
    merged, _ = _for_port(dr.traffic_policy, port, ("spec", "trafficPolicy"))
    for i, s in enumerate(dr.subsets or []):
        if s.name != subset:
            continue
        own, port_level = _for_port(s.traffic_policy, port, ("spec", "subsets", i, "trafficPolicy"))
        if own is None:
            break
        if merged is None or port_level:
            return own
        tls_from = own if own.tls is not None else merged
        return ClusterPolicy(
            tls=tls_from.tls,
            tls_path=tls_from.tls_path,
            load_balancer=own.load_balancer if own.load_balancer is not None else merged.load_balancer,
            connection_pool=own.connection_pool if own.connection_pool is not None else merged.connection_pool,
            outlier_detection=(own.outlier_detection if own.outlier_detection is not None
                               else merged.outlier_detection),
        )
    return merged or ClusterPolicy()


# The API's duration grammar (the one its validator checks), so the two cannot drift.
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: str) -> float:
    """A duration the API has validated ("1m30s", "100ms": whole milliseconds), in seconds."""
    ms = round(sum(float(m.group(1)) * _UNIT_S[m.group(2)] for m in _DURATION_PART.finditer(value)) * 1000)
    return ms / 1000


def _whole_seconds(value: str | None) -> int | None:
    # Istio passes only ``Duration.Seconds`` to the keepalive options (whole seconds, truncated).
    return int(seconds(value)) if value is not None else None


@dataclass(frozen=True)
class PoolSettings:
    """The cluster fields a connection pool decides (Istio's ``applyConnectionPool`` and
    ``applyH2Upgrade``)."""

    circuit_breakers: ir.CircuitBreakers
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    tcp_keepalive: ir.TcpKeepalive | None = None
    max_connection_duration_s: float | None = None
    idle_timeout_s: float | None = None
    max_requests_per_connection: int | None = None
    max_concurrent_streams: int | None = None
    h2_upgrade: bool = False
    use_client_protocol: bool = False


def pool_settings(pool: ConnectionPoolSettings | None) -> PoolSettings:
    """Istio applies a connection pool to every cluster, an empty one when the rule has none:
    the circuit-breaker thresholds are always written, at the maximum unless the rule lowers
    them (Istio's ``getDefaultCircuitBreakerThresholds``: Envoy's own defaults, 1024 connections
    and 3 parallel retries, cut traffic during endpoint churn). A 0 means "not set" (Istio
    cannot tell them apart)."""
    http, tcp = (pool.http, pool.tcp) if pool is not None else (None, None)
    limits = ir.CircuitBreakers()
    idle = None
    if http is not None:
        limits = ir.CircuitBreakers(
            max_requests=http.http2_max_requests or limits.max_requests,
            max_pending_requests=http.http1_max_pending_requests or limits.max_pending_requests,
            max_retries=http.max_retries or limits.max_retries,
        )
        idle = http.idle_timeout
    keepalive = None
    if tcp is not None:
        if tcp.max_connections:
            limits = replace(limits, max_connections=tcp.max_connections)
        # http.idleTimeout wins over tcp.idleTimeout; both become the upstream idle timeout.
        idle = idle if idle is not None else tcp.idle_timeout
        if tcp.tcp_keepalive is not None:
            k = tcp.tcp_keepalive
            keepalive = ir.TcpKeepalive(probes=k.probes or None, time_s=_whole_seconds(k.time),
                                        interval_s=_whole_seconds(k.interval))
    h2_upgrade = use_client = False
    if http is not None:
        use_client = bool(http.use_client_protocol)
        # Istio's shouldH2Upgrade: UPGRADE in the rule upgrades any port (the user says it is
        # HTTP), unless useClientProtocol is set; otherwise the mesh's h2UpgradePolicy decides,
        # and exitgate's mesh keeps Istio's default, DO_NOT_UPGRADE.
        h2_upgrade = http.h2_upgrade_policy == "UPGRADE" and not use_client
    return PoolSettings(
        circuit_breakers=limits,
        connect_timeout_s=seconds(tcp.connect_timeout) if tcp is not None and tcp.connect_timeout
        else DEFAULT_CONNECT_TIMEOUT_S,
        tcp_keepalive=keepalive,
        max_connection_duration_s=seconds(tcp.max_connection_duration)
        if tcp is not None and tcp.max_connection_duration else None,
        idle_timeout_s=seconds(idle) if idle is not None else None,
        max_requests_per_connection=(http.max_requests_per_connection or None) if http is not None else None,
        max_concurrent_streams=(http.max_concurrent_streams or None) if http is not None else None,
        h2_upgrade=h2_upgrade,
        use_client_protocol=use_client,
    )


def outlier_detection(od: OutlierDetection | None) -> tuple[ir.OutlierDetection | None, float | None]:
    """Istio's ``applyOutlierDetection``: (the outlier detection, the healthy panic threshold).

    With outlier detection Istio always writes the panic threshold, ``minHealthPercent`` or 0
    (panic mode off: with few endpoints per service it would send traffic to ejected hosts).
    ``consecutive5xxErrors`` and ``consecutiveGatewayErrors`` are passed only when written (Envoy
    then counts 5xx by its own default, 5); ``maxEjectionPercent`` only when above 0; the
    deprecated ``consecutiveErrors`` is ignored, as Istio ignores it."""
    if od is None:
        return None, None
    split = bool(od.split_external_local_origin_errors)
    return ir.OutlierDetection(
        consecutive_5xx=od.consecutive_5xx_errors,
        consecutive_gateway_failure=od.consecutive_gateway_errors,
        interval_s=seconds(od.interval) if od.interval else None,
        base_ejection_time_s=seconds(od.base_ejection_time) if od.base_ejection_time else None,
        max_ejection_percent=od.max_ejection_percent or None,
        split_external_local_origin_errors=split,
        consecutive_local_origin_failure=(od.consecutive_local_origin_failures or None) if split else None,
    ), float(od.min_health_percent or 0)
