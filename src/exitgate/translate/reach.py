"""What a proxy's traffic can reach: the clusters its routes, TCP chains and catch-alls name.
A sidecar gets the clusters of the service ports its routes reach (``translate.clusters``), and
the metric labels that only unreachable clusters would vary are constants (``labels``). Pure:
reads the IR, nothing else."""

from __future__ import annotations

from collections.abc import Iterable

from exitgate.ir import CaptureListener, Cluster, ProxyConfig, VirtualHost


def routed_clusters(vhosts: Iterable[VirtualHost]) -> set[str]:
    """The clusters the routes of ``vhosts`` send requests, copies or tunnels to."""
    # Plain loops: run on every push over thousands of virtual hosts, where a generator per
    # field was most of the time.
    names_: set[str] = set()
    add = names_.add
    for v in vhosts:
        for c in v.connect_clusters:
            add(c.cluster)
        for r in v.routes:
            for c in r.clusters:
                add(c.cluster)
            for m in r.mirrors:
                add(m.cluster)
    return names_


def reachable_clusters(pc: ProxyConfig) -> list[Cluster]:
    """The proxy's clusters that a request or connection can reach: those its routes, TCP
    chains and catch-alls name. Envoy sends traffic nowhere else (no route picks a cluster
    from a header), so only these clusters' labels can reach a metric (``labels``)."""
    names_ = routed_clusters(v for rc in pc.route_configs for v in rc.virtual_hosts)
    for lst in pc.tls_passthrough_listeners:
        names_.update(c.cluster for chain in lst.chains for c in chain.clusters)
        if lst.default_cluster is not None:
            names_.add(lst.default_cluster)
    for cap in pc.capture_listeners:
        if isinstance(cap, CaptureListener):
            names_.add(cap.default_cluster)
    return [c for c in pc.clusters if c.name in names_]
