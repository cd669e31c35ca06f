"""The translation memo reuses a route only while what it read is the same: a destination
without a port takes the port of its service when that has exactly one."""

from __future__ import annotations

from typing import Any

from exitgate.api.loader import load_document
from exitgate.api.resources import Resource
from exitgate.mesh import MeshConfig
from exitgate.translate.memo import TranslationMemo
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot


def _load(doc: dict[str, Any]) -> Resource:
    r, diags = load_document(doc, "test.yaml")
    assert r is not None, diags
    return r


def _se(ports: list[int]) -> Resource:
    return _load({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "backend"},
                  "spec": {"hosts": ["backend.example"], "resolution": "DNS",
                           "ports": [{"number": p, "name": f"http-{p}", "protocol": "HTTP"} for p in ports]}})


VS = _load({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "front"},
            "spec": {"hosts": ["front.example"], "http": [{"route": [{"destination": {"host": "backend.example"}}]}]}})
FRONT = _load({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "front"},
               "spec": {"hosts": ["front.example"], "resolution": "DNS",
                        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}})


def _clusters_routed(resources: list[Resource], memo: TranslationMemo | None) -> list[str]:
    mesh = MeshConfig()
    pc, _ = translate_sidecar(Snapshot(resources, mesh, memo), mesh.workloads[0], 15001)
    hosts = [v for rc in pc.route_configs for v in rc.virtual_hosts if v.name == "front.example:80"]
    return [c.cluster for r in hosts[0].routes for c in r.clusters]


def test_a_route_follows_its_destination_services_port() -> None:
    memo = TranslationMemo()
    one_port = [VS, FRONT, _se([8080])]
    assert _clusters_routed(one_port, memo) == ["outbound|8080||backend.example"]
    memo.next_push()
    # The same VirtualService spec; its destination service now has two ports: the incoming one.
    two_ports = [VS, FRONT, _se([8080, 9090])]
    assert _clusters_routed(two_ports, memo) == _clusters_routed(two_ports, None) == ["outbound|80||backend.example"]
    memo.next_push()
    assert _clusters_routed([VS, FRONT], memo) == ["outbound|80||backend.example"]
    memo.next_push()
    assert _clusters_routed(one_port, memo) == ["outbound|8080||backend.example"]
