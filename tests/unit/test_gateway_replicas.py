"""Gateway replicas in the mesh file: where each listens, what the sidecars see, how the
control plane names them, and the mistakes the mesh file refuses."""

from __future__ import annotations

from pathlib import Path

from exitgate.api.loader import load_text
from exitgate.mesh import GatewayProxy, MeshConfig, ServicePortMap, default_egress_gateway, load_mesh
from exitgate.runtime import ProxyRecord, RuntimeInfo
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot

GW_HOST = "istio-egressgateway.istio-system.svc.cluster.local"


def two_replicas() -> MeshConfig:
    return MeshConfig(gateways=[default_egress_gateway().model_copy(update={"replicas": 2})])


def test_replicas_listen_on_consecutive_loopback_addresses() -> None:
    g = two_replicas().gateways[0]
    assert g.replica_addresses == ["127.0.0.1", "127.0.0.2"]
    assert [g.replica_name(i) for i in range(2)] == ["istio-egressgateway-0", "istio-egressgateway-1"]
    assert default_egress_gateway().replica_name(0) == "istio-egressgateway"  # one replica keeps the name


def test_the_sidecar_reaches_every_replica_and_each_replica_binds_its_own_address() -> None:
    mesh = two_replicas()
    snap = Snapshot(load_text("", "empty.yaml").resources, mesh)
    pc, _ = translate_sidecar(snap, mesh.workloads[0], 15001)
    cluster = next(c for c in pc.clusters if c.name == f"outbound|443||{GW_HOST}")
    assert [(e.address, e.port) for e in cluster.endpoints] == [("127.0.0.1", 8443), ("127.0.0.2", 8443)]
    g = mesh.gateways[0]
    second = g.model_copy(update={"address": g.replica_addresses[1]})
    gpc, _ = translate_gateway(snap, second)
    assert all(x.address == "127.0.0.2" for x in gpc.listeners)


def test_replicas_that_would_share_an_address_and_port_are_refused(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "gateways:\n"
        "- name: a\n  replicas: 2\n  ports: [{port: 80, targetPort: 8080}]\n"
        "- name: b\n  address: 127.0.0.2\n  ports: [{port: 80, targetPort: 8080}]\n"
    )
    loaded, diags = load_mesh(mesh)
    assert loaded is None
    assert any("127.0.0.2:8080" in str(d) and "a-1" in str(d) for d in diags), [str(d) for d in diags]
    mesh.write_text("gateways:\n- name: a\n  replicas: 0\n")
    loaded, diags = load_mesh(mesh)
    assert loaded is None and any("gateways[0].replicas" in str(d) and "mesh.yaml:3:" in str(d) for d in diags), \
        [str(d) for d in diags]


def test_a_gateway_name_picks_its_first_replica_as_kubectl_logs_deploy_does() -> None:
    recs = [ProxyRecord("gw-0", "istio-system", "router", "n0", 1, "l0", deployment="gw"),
            ProxyRecord("gw-1", "istio-system", "router", "n1", 2, "l1", deployment="gw")]
    info = RuntimeInfo(1, 2, recs)
    assert info.proxy("gw") is recs[0] and info.proxy("gw-1") is recs[1] and info.proxy("gw.istio-system") is recs[0]
    assert info.proxy("other") is None


def test_an_address_must_be_an_ip() -> None:
    try:
        GatewayProxy(name="g", address="localhost", ports=[ServicePortMap(port=80, target_port=8080)])
    except ValueError as e:
        assert "address" in str(e)
    else:
        raise AssertionError("accepted a host name as address")


def test_the_control_plane_plans_one_proxy_per_replica(tmp_path: Path) -> None:
    from exitgate.controlplane import ControlPlane
    from exitgate.runtime import StateDir

    cp = ControlPlane(StateDir(tmp_path), two_replicas(), lambda _: None)
    cp._plan()
    routers = [p for p in cp.proxies if p.record.role == "router"]
    assert [p.record.name for p in routers] == ["istio-egressgateway-0", "istio-egressgateway-1"]
    assert [p.record.deployment for p in routers] == ["istio-egressgateway"] * 2
    assert routers[1].record.node_id.startswith("router~127.0.0.2~istio-egressgateway-1.istio-system~")
    assert routers[1].record.listen[0].startswith("127.0.0.2:8080")
    # Both are the same workload identity (one service account), as a Deployment's pods are.
    assert routers[0].identity == routers[1].identity
    assert len({p.record.admin_port for p in routers}) == 2
