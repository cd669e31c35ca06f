"""The translation memo reuses a route only while what it read is the same: a destination
without a port takes the port of its service when that has exactly one. Its fragments (one
service's clusters, one host's virtual host) are used again only while no resource naming their
host changed: by its short name, through a wildcard, or as a route's destination."""

from __future__ import annotations

from typing import Any

from exitgate.api.loader import load_document
from exitgate.api.resources import Resource
from exitgate.mesh import MeshConfig
from exitgate.translate.memo import DELTAS_KEPT, TranslationMemo
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


# One mesh for every push: a snapshot for another mesh object translates everything again.
MESH = MeshConfig()


def _clusters_routed(resources: list[Resource], memo: TranslationMemo | None) -> list[str]:
    mesh = MESH
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


def _se_named(name: str, host: str, port: int = 80, protocol: str = "HTTP") -> Resource:
    return _load({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": name},
                  "spec": {"hosts": [host], "resolution": "DNS",
                           "ports": [{"number": port, "name": "p", "protocol": protocol}]}})


def _dr(host: str) -> Resource:
    return _load({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "tls"},
                  "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}})


def _cluster_tls(resources: list[Resource], memo: TranslationMemo | None, cluster: str) -> str | None:
    pc, _ = translate_sidecar(Snapshot(resources, MESH, memo), MESH.workloads[0], 15001)
    found = [c for c in pc.clusters if c.name == cluster]
    assert found, cluster
    return found[0].tls.mode.value if found[0].tls is not None else None


def test_a_destination_rule_by_short_name_changes_the_memoized_clusters() -> None:
    memo = TranslationMemo()
    host = "reviews.default.svc.cluster.local"
    se = _se_named("reviews", host)
    assert _cluster_tls([se], memo, f"outbound|80||{host}") is None
    memo.next_push()
    # "reviews" in namespace default is the same host: the cluster built before is not reused.
    assert _cluster_tls([se, _dr("reviews")], memo, f"outbound|80||{host}") == "SIMPLE"


def test_a_wildcard_destination_rule_changes_every_memoized_cluster() -> None:
    memo = TranslationMemo()
    ses = [_se_named(f"se-{i}", f"svc-{i}.example.com") for i in range(3)]
    assert [_cluster_tls(ses, memo, f"outbound|80||svc-{i}.example.com") for i in range(3)] == [None] * 3
    memo.next_push()
    with_rule = [*ses, _dr("*.example.com")]
    assert [_cluster_tls(with_rule, memo, f"outbound|80||svc-{i}.example.com") for i in range(3)] == ["SIMPLE"] * 3
    memo.next_push()
    assert _cluster_tls(ses, memo, "outbound|80||svc-1.example.com") is None


def _front_routes_to(backend: str) -> Resource:
    return _load({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "front"},
                  "spec": {"hosts": ["front.example"],
                           "http": [{"route": [{"destination": {"host": backend, "port": {"number": 80}}}]}]}})


def test_a_changed_virtual_service_changes_its_hosts_memoized_routes() -> None:
    memo = TranslationMemo()
    ses = [FRONT, _se_named("a", "a.example"), _se_named("b", "b.example")]
    for backend in ("a.example", "b.example", "a.example"):
        # The same name, another spec: a new resource, as the store hands over a changed document.
        resources = [*ses, _front_routes_to(backend)]
        assert _clusters_routed(resources, memo) == _clusters_routed(resources, None) == [f"outbound|80||{backend}"]
        memo.next_push()


def test_a_fragment_is_used_again_only_while_every_delta_since_is_known_and_misses_it() -> None:
    memo = TranslationMemo()
    builds: list[int] = []

    def fragment(generation: int) -> int:
        def build() -> tuple[int, tuple[str]]:
            builds.append(generation)
            return generation, ("backend.example",)
        return memo.fragment(generation, ("f",), ("front.example",), None, build)

    other, backend = _se_named("x", "x.example"), _se([80])
    assert fragment(Snapshot([VS, FRONT], MESH, memo).generation) == 1
    # Another host changed: the fragment stands. Its own host, or a host it read: built again.
    assert fragment(Snapshot([VS, FRONT, other], MESH, memo).generation) == 1
    assert fragment(Snapshot([VS, FRONT, other, backend], MESH, memo).generation) == 3
    assert fragment(Snapshot([VS, other, backend], MESH, memo).generation) == 4
    # Another mesh, and back: built again each time, then used again.
    assert fragment(Snapshot([VS, other, backend], MeshConfig(root_namespace="other"), memo).generation) == 5
    assert fragment(Snapshot([VS, other, backend], MESH, memo).generation) == 6
    assert fragment(Snapshot([VS, other, backend], MESH, memo).generation) == 6
    # More snapshots since than the memo keeps deltas for, none touching its hosts: built again.
    for i in range(DELTAS_KEPT):
        Snapshot([VS, other, backend, _se_named(f"y-{i}", f"y-{i}.example")], MESH, memo)
    last = Snapshot([VS, other, backend], MESH, memo).generation
    assert fragment(last) == last
    assert builds == [1, 3, 4, 5, 6, last]


def test_an_older_snapshot_translated_after_a_newer_one_gets_its_own_fragments() -> None:
    memo = TranslationMemo()
    se = _se_named("a", "a.example")
    old = Snapshot([se], MESH, memo)
    new = Snapshot([se, _dr("a.example")], MESH, memo)

    def tls(snap: Snapshot) -> str | None:
        pc, _ = translate_sidecar(snap, MESH.workloads[0], 15001)
        c = next(c for c in pc.clusters if c.name == "outbound|80||a.example")
        return c.tls.mode.value if c.tls is not None else None

    assert tls(new) == "SIMPLE"
    assert tls(old) is None
    assert tls(new) == "SIMPLE"


def test_an_equal_mesh_is_the_same_mesh_for_the_delta() -> None:
    memo = TranslationMemo()
    builds: list[int] = []

    def fragment(generation: int) -> int:
        def build() -> tuple[int, tuple[()]]:
            builds.append(generation)
            return generation, ()
        return memo.fragment(generation, ("f",), ("front.example",), None, build)

    assert fragment(Snapshot([FRONT], MeshConfig(), memo).generation) == 1
    # The inventory of applied Kubernetes objects gives a new, equal mesh at every push.
    again = Snapshot([FRONT], MeshConfig(), memo)
    assert fragment(again.generation) == 1
    assert builds == [1]
    # And the snapshot is of the mesh seen before, so what is memoized on its identity (the
    # registry's services, the fragments keyed on them) is used again too.
    first = Snapshot([FRONT], MESH, memo)
    assert Snapshot([FRONT], MeshConfig(), memo).mesh is first.mesh
    assert first.services[-1] is Snapshot([FRONT], MeshConfig(), memo).services[-1]
