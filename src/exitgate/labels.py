"""What Istio's standard metrics name as a request's destination, cluster by cluster: the labels
Envoy's stats loggers read from a cluster's metadata (``envoy.telemetry``), and those every
cluster a proxy's traffic can reach gives the same value. The loggers write the shared ones as
constants and no cluster carries them: an egress gateway's routes all reach services outside the
mesh, whose workload labels are all ``unknown``, and at thousands of clusters each label in each
cluster's metadata costs Envoy memory and time (bench/RESULTS.md). A cluster no route or chain
names (a gateway's own service) carries no metric, so it does not count. One implementation,
read by the translation (``translate.telemetry``) and by the proto layer."""

from __future__ import annotations

from collections.abc import Iterable

from exitgate import ir, names

# The destination labels of a request that reached no service's workload.
DESTINATION_DEFAULTS = {
    "destination_workload": "unknown", "destination_workload_namespace": "unknown", "destination_app": "unknown",
    "destination_version": "unknown", "destination_canonical_service": "unknown",
    "destination_canonical_revision": "latest", "destination_service_namespace": "unknown",
    "destination_cluster": "unknown", "destination_principal": "unknown", "source_principal_default": "unknown",
}

Shared = tuple[tuple[str, str], ...]


def cluster_labels(c: ir.Cluster) -> dict[str, str]:
    """The destination labels of a request the cluster carried."""
    labels: dict[str, str] = dict(DESTINATION_DEFAULTS)
    if c.service is not None:
        svc = c.service
        labels.update(destination_service=svc.host, destination_service_name=svc.name,
                      destination_service_namespace=svc.namespace,
                      tls_mode=c.tls.mode.value if c.tls is not None else "NONE")
        if c.tls is not None and c.tls.mode is ir.TlsMode.ISTIO_MUTUAL:
            # The mesh's mTLS: the peer is verified to hold the service's identity, and this
            # proxy shows its own SPIFFE certificate (read natively, the default left empty).
            labels.update(destination_principal=svc.principal or "unknown", source_principal_default="")
        if svc.workload is not None:
            w = svc.workload
            labels.update(destination_workload=w.workload, destination_workload_namespace=w.namespace,
                          destination_canonical_service=w.canonical_service,
                          destination_canonical_revision=w.canonical_revision, destination_cluster=w.cluster_id)
            if w.app:
                labels["destination_app"] = w.app
            if w.version:
                labels["destination_version"] = w.version
    elif c.name in (names.PASSTHROUGH_CLUSTER, names.BLACKHOLE_CLUSTER):
        labels.update(destination_service_name=c.name, destination_service="unknown")
    return labels


def route_labels(route_name: str) -> dict[str, str]:
    """The destination labels of a route that answers itself (redirect, direct response);
    REGISTRY_ONLY's ``block_all`` stands for the BlackHoleCluster, as in Istio."""
    labels = dict(DESTINATION_DEFAULTS)
    if route_name == names.BLOCK_ALL_ROUTE:
        labels["destination_service_name"] = names.BLACKHOLE_CLUSTER
    return labels


# The labels a proxy's clusters may share: those of a route that answers itself.
_SHAREABLE = tuple(DESTINATION_DEFAULTS)


def _shareable_key(c: ir.Cluster) -> tuple[object, ...]:
    """What ``cluster_labels`` reads for the shareable labels (``DESTINATION_DEFAULTS``' keys):
    two clusters with the same key give them the same values. A label that comes to be read
    from anything else must join this key (``tests/unit/test_labels.py`` compares the two)."""
    svc = c.service
    if svc is None:
        return ()  # the defaults (the passthrough and blackhole names are not shareable labels)
    mutual = c.tls is not None and c.tls.mode is ir.TlsMode.ISTIO_MUTUAL
    return (svc.namespace, mutual, svc.principal if mutual else "", svc.workload)


def shared_labels(clusters: Iterable[ir.Cluster]) -> Shared:
    """The labels with one value in every one of ``clusters`` (those the proxy's traffic can
    reach: ``translate.reach.reachable_clusters``) and in both kinds of routes that answer
    themselves (counted whether the proxy has such routes or not: their labels are their own
    metadata, which stays whole). A label some of them lack is not shared."""
    base, block = route_labels(""), route_labels(names.BLOCK_ALL_ROUTE)
    shared = {i: base[k] for i, k in enumerate(_SHAREABLE) if block.get(k) == base[k]}
    # The clusters' labels are worked out once per key (a proxy's thousands of clusters have a
    # handful of keys), each key compared on the labels still shared. Nothing is kept on the
    # clusters between pushes: an attribute more on 20,000 clusters was more memory (30 MiB as
    # a set of the labels, 7 as a tuple) than this takes time.
    seen: set[tuple[object, ...]] = set()
    for c in clusters:
        if not shared:
            break
        key = _shareable_key(c)
        if key in seen:
            continue
        seen.add(key)
        labels = cluster_labels(c)
        values = tuple(labels.get(k) for k in _SHAREABLE)
        shared = {i: v for i, v in shared.items() if values[i] == v}
    return tuple(sorted((_SHAREABLE[i], v) for i, v in shared.items()))
