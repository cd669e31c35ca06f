"""Who a proxy reports as in Istio's standard metrics, and the listeners that report it.

Istio's sidecar injector derives a workload's canonical service and revision from its labels
(``service.istio.io/canonical-name``, then ``app.kubernetes.io/name``, then ``app``, then the
Deployment's name; the revision likewise from ``service.istio.io/canonical-revision``,
``app.kubernetes.io/version``, ``version``, else ``latest``); the stats filter reads them, with
the workload's name, namespace and ``app``/``version`` labels, from the proxy's node metadata.
The labels themselves are rendered into Envoy's stats access logger by ``envoy.telemetry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from exitgate import names
from exitgate.labels import shared_labels
from exitgate.translate.reach import reachable_clusters
from exitgate.ir import AccessLogFormat, CaptureListener, DnsListener, ProxyConfig, Telemetry, WorkloadLabels
from exitgate.mesh import MeshConfig

# Istio's CLUSTER_ID when no multicluster name is set.
DEFAULT_CLUSTER_ID = "Kubernetes"


def workload_labels(workload: str, namespace: str, labels: Mapping[str, str], service_account: str,
                    trust_domain: str) -> WorkloadLabels:
    canonical = (labels.get("service.istio.io/canonical-name") or labels.get("app.kubernetes.io/name")
                 or labels.get("app") or workload)
    revision = (labels.get("service.istio.io/canonical-revision") or labels.get("app.kubernetes.io/version")
                or labels.get("version") or "latest")
    return WorkloadLabels(workload=workload, namespace=namespace,
                          principal=names.spiffe_id(namespace, service_account, trust_domain=trust_domain),
                          app=labels.get("app", ""), version=labels.get("version", ""),
                          canonical_service=canonical, canonical_revision=revision, cluster_id=DEFAULT_CLUSTER_ID)


def log_format(mesh: MeshConfig) -> AccessLogFormat | None:
    """The mesh's access-log format; None for Istio's default text format."""
    if mesh.access_log_encoding == "TEXT" and not mesh.access_log_format:
        return None
    return AccessLogFormat(mesh.access_log_encoding, mesh.access_log_format)


def with_telemetry(pc: ProxyConfig, telemetry: Telemetry, logs: AccessLogFormat | None = None) -> ProxyConfig:
    """Every listener of the proxy reports Istio's metrics with ``telemetry``'s labels, and
    writes its access log in ``logs``'s format. The destination labels all the clusters its
    traffic can reach share are the loggers' constants (``labels.shared_labels``): a gateway's
    clusters for its own service, which sidecars use and it never does, do not count, or their
    workload labels would put every label of thousands of external services' clusters back."""
    shared = shared_labels(reachable_clusters(pc))
    telemetry = replace(telemetry, shared=shared)

    def captured(c: CaptureListener | DnsListener) -> CaptureListener | DnsListener:
        if isinstance(c, DnsListener):
            return c
        return replace(c, telemetry=telemetry, log_format=logs,
                       http=replace(c.http, telemetry=telemetry, log_format=logs) if c.http else None)

    return replace(pc, shared_labels=shared,
                   listeners=tuple(replace(x, telemetry=telemetry, log_format=logs) for x in pc.listeners),
                   tls_passthrough_listeners=tuple(replace(x, telemetry=telemetry, log_format=logs)
                                                   for x in pc.tls_passthrough_listeners),
                   capture_listeners=tuple(captured(c) for c in pc.capture_listeners))

