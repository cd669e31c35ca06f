"""The metric labels a proxy's clusters share: written as constants by the stats loggers and
left out of every cluster's metadata (``exitgate.labels``), with Istio's values either way."""

from __future__ import annotations

from exitgate import ir, labels, names
from exitgate.api.loader import load_text
from exitgate.envoy import telemetry
from exitgate.envoy.snapshot import ProtoMemo, xds_resources
from exitgate.mesh import MeshConfig, WorkloadProxy
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.reach import reachable_clusters
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot
from tests.unit.test_sidecar_clusters import GATEWAY, SE, VS_TO_GATEWAY
from exitgate.xds.cache import CLUSTER_TYPE, Packed

SOURCE = ir.WorkloadLabels("istio-egressgateway", "istio-system")


def external(host: str) -> ir.Cluster:
    return ir.Cluster(f"outbound|443||{host}", ir.DiscoveryType.STRICT_DNS, (ir.Endpoint(host, 443),),
                      service=ir.ServiceLabels(host, host, "default"))


def in_mesh() -> ir.Cluster:
    workload = ir.WorkloadLabels("istio-egressgateway", "istio-system", app="istio-egressgateway")
    return ir.Cluster("outbound|80||istio-egressgateway.istio-system.svc.cluster.local", ir.DiscoveryType.STATIC,
                      (ir.Endpoint("127.0.0.1", 8080),),
                      service=ir.ServiceLabels("istio-egressgateway.istio-system.svc.cluster.local",
                                               "istio-egressgateway", "istio-system", workload=workload))


def passthrough() -> ir.Cluster:
    return ir.Cluster(names.PASSTHROUGH_CLUSTER, ir.DiscoveryType.DYNAMIC_FORWARD_PROXY, ())


def test_external_services_share_their_workload_labels_not_their_names() -> None:
    shared = dict(labels.shared_labels([external("a.example.com"), external("b.example.com"), passthrough()]))
    assert shared["destination_workload"] == "unknown" and shared["destination_canonical_revision"] == "latest"
    assert shared["destination_principal"] == "unknown"
    # Each cluster's own name, and what an answer-itself route lacks, are never shared.
    assert not {"destination_service", "destination_service_name", "tls_mode"} & set(shared)


def test_a_cluster_with_another_value_ends_the_sharing_of_that_label() -> None:
    shared = dict(labels.shared_labels([external("a.example.com"), in_mesh()]))
    assert "destination_workload" not in shared and "destination_app" not in shared
    assert shared["destination_version"] == "unknown"  # the workload has no version label
    assert "destination_service_namespace" not in shared


def test_the_loggers_write_shared_labels_as_constants_and_clusters_leave_them_out() -> None:
    clusters = (external("a.example.com"), external("b.example.com"))
    shared = labels.shared_labels(clusters)
    t = ir.Telemetry(SOURCE, host_fallback=False, shared=shared)
    tags = {tag["name"]: tag["value_format"] for tag in telemetry.http_metrics(t)[0]["typed_config"]["value"]
            ["counters"][0]["stat"]["tags"]}
    assert tags["destination_workload"] == "unknown"
    assert tags["destination_service"].startswith("%CLUSTER_METADATA(exitgate.telemetry:destination_service)%")
    assert tags["source_principal"] == "unknown%UPSTREAM_LOCAL_URI_SAN%"
    meta = telemetry.cluster_metadata(clusters[0], [k for k, _ in shared])["exitgate.telemetry"]
    assert meta == {"destination_service": "a.example.com", "destination_service_name": "a.example.com",
                    "destination_service_namespace": "default", "tls_mode": "NONE"}
    # Nothing shared: every label on every cluster, as before.
    assert telemetry.cluster_metadata(clusters[0])["exitgate.telemetry"] == labels.cluster_labels(clusters[0])


def test_a_cluster_built_with_other_shared_labels_is_another_resource() -> None:
    memo = ProtoMemo()
    c = external("a.example.com")
    one = ir.ProxyConfig((), (), (c,), (), shared_labels=(("destination_workload", "unknown"),))
    other = ir.ProxyConfig((), (), (c,), ())
    first = xds_resources(one, {}, memo)[CLUSTER_TYPE][c.name]
    second = xds_resources(other, {}, memo)[CLUSTER_TYPE][c.name]
    assert isinstance(first, Packed) and isinstance(second, Packed) and first.blob != second.blob


def _by_definition(clusters: list[ir.Cluster]) -> labels.Shared:
    """Shared labels as the docstring defines them: every cluster's labels, each compared."""
    rows = [labels.cluster_labels(c) for c in clusters] + [labels.route_labels(""),
                                                           labels.route_labels(names.BLOCK_ALL_ROUTE)]
    keys = set(labels.DESTINATION_DEFAULTS)
    return tuple(sorted((k, rows[0][k]) for k in keys if all(r.get(k) == rows[0][k] for r in rows)))


def test_clusters_are_compared_once_per_key_with_the_same_result_as_each_one() -> None:
    mutual = ir.UpstreamTls(ir.TlsMode.ISTIO_MUTUAL)
    simple = ir.UpstreamTls(ir.TlsMode.SIMPLE)
    other_workload = ir.WorkloadLabels("api", "prod", app="api", version="v2", canonical_service="api",
                                       canonical_revision="v2", cluster_id="east")
    variants = [
        external("a.example.com"), external("b.example.com"), in_mesh(), passthrough(),
        ir.Cluster(names.BLACKHOLE_CLUSTER, ir.DiscoveryType.STATIC, ()),
        ir.Cluster("outbound|443||c.example.com", ir.DiscoveryType.STRICT_DNS, (), tls=simple,
                   service=ir.ServiceLabels("c.example.com", "c.example.com", "other")),
        ir.Cluster("outbound|80||gw", ir.DiscoveryType.STATIC, (), tls=mutual,
                   service=ir.ServiceLabels("gw", "gw", "default", principal="spiffe://cluster.local/ns/a/sa/b")),
        ir.Cluster("outbound|81||gw", ir.DiscoveryType.STATIC, (), tls=mutual,
                   service=ir.ServiceLabels("gw", "gw", "default")),
        ir.Cluster("outbound|82||api", ir.DiscoveryType.STATIC, (),
                   service=ir.ServiceLabels("api", "api", "prod", workload=other_workload)),
        # Apart from an external service by one part of the key only: the workload, the namespace.
        ir.Cluster("outbound|83||api", ir.DiscoveryType.STATIC, (),
                   service=ir.ServiceLabels("api", "api", "default", workload=other_workload)),
        ir.Cluster("outbound|84||odd", ir.DiscoveryType.STATIC, (),
                   service=ir.ServiceLabels("odd", "odd", "unknown")),
        ir.Cluster("outbound|85||gw", ir.DiscoveryType.STATIC, (), tls=mutual,
                   service=ir.ServiceLabels("gw", "gw", "default", principal="unknown")),
    ]
    # Every pair and triple of kinds, in both orders: the fast path must agree on each.
    for i, a in enumerate(variants):
        for b in variants[i:]:
            for c in variants:
                for group in ([a, b, c], [c, b, a], [a, a, b]):
                    assert labels.shared_labels(group) == _by_definition(group), group


# Istio's Egress Gateways task: the mesh hop of port 80 goes to the gateway.
EGRESS_TASK = "---\n".join((SE, GATEWAY, VS_TO_GATEWAY))


def _egress_task() -> tuple[ir.ProxyConfig, ir.ProxyConfig]:

    loaded = load_text(EGRESS_TASK, "task.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    sleep = WorkloadProxy(name="sleep", namespace="default", service_account="sleep", labels={"app": "sleep"})
    mesh = MeshConfig(workloads=[sleep])
    snap = Snapshot(loaded.resources, mesh)
    return translate_gateway(snap, mesh.gateways[0])[0], translate_sidecar(snap, sleep, 15001)[0]


def test_a_gateway_shares_the_labels_of_the_clusters_its_routes_reach_only() -> None:
    gateway, sidecar = _egress_task()
    gw_own = "outbound|80||istio-egressgateway.istio-system.svc.cluster.local"
    # The gateway has its own service's clusters (Istio's set), but no route of its goes there.
    assert gw_own in {c.name for c in gateway.clusters}
    assert [c.name for c in reachable_clusters(gateway)] == ["outbound|80||edition.cnn.com"]
    shared = dict(gateway.shared_labels)
    assert shared["destination_workload"] == "unknown" and shared["destination_app"] == "unknown"
    own = next(c for c in gateway.clusters if c.name == gw_own)
    meta = telemetry.cluster_metadata(own, list(shared))["exitgate.telemetry"]
    assert "destination_workload" not in meta and meta["destination_service_name"] == "istio-egressgateway"
    # The sidecar's route reaches the gateway's workload: its labels are read from the cluster.
    assert gw_own in {c.name for c in reachable_clusters(sidecar)}
    assert "destination_workload" not in dict(sidecar.shared_labels)
    own = next(c for c in sidecar.clusters if c.name == gw_own)
    sidecar_meta = telemetry.cluster_metadata(own, [k for k, _ in sidecar.shared_labels])["exitgate.telemetry"]
    assert sidecar_meta["destination_workload"] == "istio-egressgateway"
