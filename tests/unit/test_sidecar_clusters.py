"""A sidecar gets the clusters of the service ports its routes reach (issue 9): a host whose
every request a mesh VirtualService sends to the egress gateway gets no cluster of its own in
the sidecar; a port any route reaches keeps all its clusters, its DestinationRule's subsets
too, as in Istio. Checked on the translated sidecar, with and without capture."""

from __future__ import annotations

import pytest

from exitgate import names
from exitgate.api.loader import load_text
from exitgate.ir import ProxyConfig
from exitgate.mesh import MeshConfig, WorkloadProxy
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot

SLEEP = WorkloadProxy(name="sleep", namespace="default", service_account="sleep", labels={"app": "sleep"})
GW = "istio-egressgateway.istio-system.svc.cluster.local"

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"""
GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [edition.cnn.com]}]
"""
# Istio's Egress Gateways task: the mesh hop of port 80 goes to the gateway.
VS_TO_GATEWAY = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-cnn-through-egress-gateway}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: %s, port: {number: 80}}}]
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route: [{destination: {host: edition.cnn.com, port: {number: 80}}}]
""" % GW
# Istio's Egress TLS Origination task: port 80 goes to port 443 of the same host.
VS_TO_443 = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edition-cnn-com}
spec:
  hosts: [edition.cnn.com]
  http:
  - match: [{port: 80}]
    route: [{destination: {host: edition.cnn.com, subset: v1, port: {number: 443}}}]
"""
DR_SUBSETS = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cnn}
spec:
  host: edition.cnn.com
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""


def clusters(*docs: str, capture: bool = False, mesh: MeshConfig | None = None) -> set[str]:
    loaded = load_text("---\n".join(docs), "case.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    pc: ProxyConfig
    pc, _ = translate_sidecar(Snapshot(loaded.resources, mesh or MeshConfig(workloads=[SLEEP])), SLEEP, 15001,
                              capture_netns="ns-sleep" if capture else None)
    return {c.name for c in pc.clusters}


def cnn(port: int, subset: str = "") -> str:
    return names.cluster_name("edition.cnn.com", port, subset)


@pytest.mark.parametrize("capture", [False, True])
def test_a_service_without_a_virtual_service_keeps_every_port_and_subset(capture: bool) -> None:
    got = clusters(SE, DR_SUBSETS, capture=capture)
    assert {cnn(80), cnn(80, "v1"), cnn(80, "v2"), cnn(443), cnn(443, "v1"), cnn(443, "v2")} <= got


@pytest.mark.parametrize("capture", [False, True])
def test_a_port_sent_to_the_gateway_has_no_cluster_of_its_own(capture: bool) -> None:
    got = clusters(SE, DR_SUBSETS, GATEWAY, VS_TO_GATEWAY, capture=capture)
    assert not {cnn(80), cnn(80, "v1"), cnn(80, "v2")} & got
    # The gateway's cluster carries it; port 443, which no VirtualService routes, keeps its own.
    assert names.cluster_name(GW, 80) in got
    assert {cnn(443), cnn(443, "v1"), cnn(443, "v2")} <= got
    assert {names.PASSTHROUGH_CLUSTER, names.BLACKHOLE_CLUSTER} <= got


def test_a_port_one_subset_is_routed_to_keeps_all_its_subsets() -> None:
    got = clusters(SE, DR_SUBSETS, VS_TO_443)
    assert {cnn(443), cnn(443, "v1"), cnn(443, "v2")} <= got
    assert not {cnn(80), cnn(80, "v1"), cnn(80, "v2")} & got


def test_every_cluster_a_route_or_tunnel_names_is_there() -> None:
    loaded = load_text("---\n".join([SE, DR_SUBSETS, GATEWAY, VS_TO_GATEWAY]), "case.yaml")
    pc, _ = translate_sidecar(Snapshot(loaded.resources, MeshConfig(workloads=[SLEEP])), SLEEP, 15001)
    have = {c.name for c in pc.clusters}
    named = {c.cluster for rc in pc.route_configs for v in rc.virtual_hosts
             for c in (*v.connect_clusters, *(w for r in v.routes for w in r.clusters))}
    assert named and named <= have


def test_the_mesh_file_can_ask_for_istios_whole_set() -> None:
    mesh = MeshConfig.model_validate({"workloads": [SLEEP], "sidecarClusters": "all"})
    got = clusters(SE, DR_SUBSETS, GATEWAY, VS_TO_GATEWAY, mesh=mesh)
    assert {cnn(80), cnn(80, "v1"), cnn(80, "v2"), names.cluster_name(GW, 80)} <= got
    with pytest.raises(ValueError, match="sidecarClusters"):
        MeshConfig.model_validate({"sidecarClusters": "some"})
