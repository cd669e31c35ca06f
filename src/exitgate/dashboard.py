"""The web view's data, as pure functions: the egress traffic (from the gateways' metrics),
the proxies' sync state, the certificates and the recent configuration changes, in one JSON
document that ``web/index.html`` renders and the control plane serves at ``/api/dashboard``.

Latency quantiles are read from the histogram buckets as Prometheus' ``histogram_quantile``
reads them (linear within the bucket)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import Metric

from exitgate.monitoring import STATUS_TYPES, type_status

# What Envoy's response flags mean (Envoy's access-log docs), as the web view explains them.
RESPONSE_FLAGS = {
    "-": "no flag: the request was answered normally",
    "UH": "no healthy upstream host",
    "UF": "upstream connection failure",
    "UO": "upstream overflow (circuit breaking)",
    "NR": "no route configured for the request (or no matching filter chain)",
    "URX": "upstream retry limit or connect attempts exceeded",
    "NC": "upstream cluster not found",
    "DT": "request or connection exceeded max duration",
    "DC": "downstream connection terminated",
    "LH": "local health check failed",
    "UT": "upstream request timeout",
    "LR": "connection local reset",
    "UR": "upstream remote reset",
    "UC": "upstream connection termination",
    "DI": "request delayed by fault injection",
    "FI": "request aborted by fault injection",
    "RL": "rate limited locally",
    "UAEX": "denied by the external authorization service",
    "RLSE": "rate limit service error",
    "IH": "invalid header value rejected",
    "SI": "stream idle timeout",
    "DPE": "downstream protocol error",
    "UPE": "upstream protocol error",
    "UMSDR": "upstream max stream duration reached",
    "OM": "overload manager terminated the request",
    "DF": "DNS resolution failed",
    "DO": "dropped by overload",
}


def flag_meanings(flags: str) -> str:
    return "; ".join(RESPONSE_FLAGS.get(f, "unknown flag") for f in flags.split(","))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """``histogram_quantile(q, ...)`` over cumulative ``(le, count)`` buckets."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # beyond the last finite bucket: its bound, as Prometheus
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def _samples(families: Iterable[Metric], name: str) -> Iterable[tuple[dict[str, str], float]]:
    for f in families:
        for s in f.samples:
            if s.name == name:
                yield s.labels, s.value


FLOW_LABELS = ("source_principal", "destination_service", "gateway", "gateway_namespace", "downstream_tls", "upstream_tls")


def traffic(by_gateway: Mapping[str, Iterable[Metric]]) -> list[dict[str, Any]]:
    """One row per (workload identity, external service, gateway, TLS on each hop)."""
    flows: dict[tuple[str, ...], dict[str, Any]] = {}
    for families in by_gateway.values():
        families = list(families)
        for labels, value in _samples(families, "exitgate_egress_requests_total"):
            key = tuple(labels.get(k, "") for k in FLOW_LABELS)
            flow = flows.setdefault(key, {"codes": Counter(), "flags": Counter(), "buckets": Counter()})
            flow["codes"][labels.get("response_code", "")] += value
            flow["flags"][labels.get("response_flags", "-")] += value
        for labels, value in _samples(families, "exitgate_egress_request_duration_milliseconds_bucket"):
            key = tuple(labels.get(k, "") for k in FLOW_LABELS)
            if key in flows:
                flows[key]["buckets"][float(labels["le"])] += value
    out = []
    for key, flow in sorted(flows.items()):
        buckets = sorted(flow["buckets"].items())
        row: dict[str, Any] = dict(zip(FLOW_LABELS, key))
        row.update(
            requests=int(sum(flow["codes"].values())),
            codes={c: int(n) for c, n in sorted(flow["codes"].items()) if n},
            flags=[{"flag": f, "count": int(n), "meaning": flag_meanings(f)} for f, n in sorted(flow["flags"].items()) if n],
            p50_ms=quantile(0.5, buckets), p99_ms=quantile(0.99, buckets),
        )
        out.append(row)
    return out


@dataclass(frozen=True)
class CertificateView:
    kind: str  # "mesh root", "workload", "credential"
    name: str
    not_after: datetime
    serial: str = ""

    def as_dict(self, now: datetime) -> dict[str, Any]:
        left = (self.not_after - now).total_seconds()
        return {"kind": self.kind, "name": self.name, "not_after": self.not_after.isoformat(), "serial": self.serial,
                "expires_in_s": int(left), "expired": left <= 0}


def proxies(syncz: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in syncz:
        types = p.get("types", {})
        nacks = [dict(t["nack"], type=name) for name, t in types.items() if t.get("nack")]
        out.append({"name": f"{p['name']}.{p['namespace']}", "role": p.get("role", ""), "connected": p.get("connected"),
                    "status": {t: type_status(types.get(t)) for t in STATUS_TYPES},
                    "last_nack": max(nacks, key=lambda n: n.get("time") or 0) if nacks else None})
    return out


def view(by_gateway: Mapping[str, Iterable[Metric]], syncz: Sequence[Mapping[str, Any]],
         certificates: Sequence[CertificateView], changes: Sequence[Mapping[str, Any]], now: datetime,
         config_version: int) -> dict[str, Any]:
    return {
        "generated_at": now.isoformat(),
        "config_version": config_version,
        "traffic": traffic(by_gateway),
        "proxies": proxies(syncz),
        "certificates": [c.as_dict(now) for c in sorted(certificates, key=lambda c: (c.not_after, c.name))],
        "changes": list(changes),
    }
