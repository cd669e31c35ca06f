"""The proto memo: an unchanged IR resource keeps its Envoy message from one push to the next;
a changed one is built again; nothing older than the last push is kept."""

from __future__ import annotations

from exitgate import ir
from exitgate.envoy.snapshot import ProtoMemo, xds_resources
from exitgate.xds.cache import CLUSTER_TYPE


def _pc(*clusters: ir.Cluster) -> ir.ProxyConfig:
    return ir.ProxyConfig((), (), clusters, ())


def test_unchanged_resources_are_not_rebuilt() -> None:
    memo = ProtoMemo()
    a = ir.Cluster("outbound|80||a.example", ir.DiscoveryType.STRICT_DNS, (ir.Endpoint("a.example", 80),))
    b = ir.Cluster("outbound|80||b.example", ir.DiscoveryType.STRICT_DNS, (ir.Endpoint("b.example", 80),))
    first = xds_resources(_pc(a, b), {}, memo)[CLUSTER_TYPE]
    memo.next_push()
    # An equal value (a new object, as every translation makes) finds the same message.
    b2 = ir.Cluster("outbound|80||b.example", ir.DiscoveryType.STRICT_DNS, (ir.Endpoint("b.example", 8080),))
    second = xds_resources(_pc(ir.Cluster(a.name, a.discovery, a.endpoints), b2), {}, memo)[CLUSTER_TYPE]
    assert second[a.name] is first[a.name]
    assert second[b.name] is not first[b.name]
    assert second[b.name].message().load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address \
        .port_value == 8080
    memo.next_push()
    memo.next_push()  # two pushes without ``b`` at port 80: forgotten
    third = xds_resources(_pc(b), {}, memo)[CLUSTER_TYPE]
    assert third[b.name] is not first[b.name] and third[b.name] == first[b.name]


def test_a_route_table_with_one_host_more_converts_only_that_host(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from exitgate.envoy import routes
    from exitgate.xds.cache import ROUTE_TYPE

    built: list[str] = []
    real = routes.virtual_host
    monkeypatch.setattr(routes, "virtual_host", lambda v: (built.append(v.name), real(v))[1])

    def vhost(i: int) -> ir.VirtualHost:
        route = ir.Route("default", clusters=(ir.WeightedCluster(f"outbound|80||svc-{i}.example", 100),))
        return ir.VirtualHost(f"svc-{i}.example:80", (f"svc-{i}.example",), (route,))

    memo = ProtoMemo()
    first = xds_resources(ir.ProxyConfig((), (ir.RouteConfig("80", tuple(vhost(i) for i in range(3))),), (), ()),
                          {}, memo)[ROUTE_TYPE]["80"]
    assert built == [f"svc-{i}.example:80" for i in range(3)]
    memo.next_push()
    built.clear()
    second = xds_resources(ir.ProxyConfig((), (ir.RouteConfig("80", tuple(vhost(i) for i in range(4))),), (), ()),
                           {}, memo)[ROUTE_TYPE]["80"]
    assert built == ["svc-3.example:80"]
    first, second = first.message(), second.message()
    assert list(second.virtual_hosts)[:3] == list(first.virtual_hosts) and len(second.virtual_hosts) == 4
    assert second.HasField("validate_clusters") and not second.validate_clusters.value


def test_a_route_table_assembled_from_its_hosts_bytes_is_the_tables_own_serialization() -> None:
    """``packed_route_config`` writes the bytes without the table's message: they must be what
    the message, built whole, serializes to (and parse back to the same message)."""
    from envoy.config.route.v3 import route_pb2

    from exitgate.envoy import routes

    hosts = tuple(ir.VirtualHost(f"svc-{i}.example:80", (f"svc-{i}.example", f"svc-{i}.example:80"), (
        ir.Route("default", clusters=(ir.WeightedCluster(f"outbound|80||svc-{i}.example", 100),)),))
        for i in range(300))  # long enough that lengths take two varint bytes
    for rc in (ir.RouteConfig("80", hosts), ir.RouteConfig("8443", ()), ir.RouteConfig("", hosts[:1])):
        whole = route_pb2.RouteConfiguration(name=rc.name)
        whole.validate_clusters.value = False
        whole.virtual_hosts.extend(routes.virtual_host(v) for v in rc.virtual_hosts)
        packed = routes.packed_route_config(rc, routes.framed_virtual_host)
        assert packed.blob == whole.SerializeToString(deterministic=True)
        assert packed.message() == whole and routes.route_config(rc) == whole


def test_an_unchanged_push_between_keeps_the_virtual_hosts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The route table found whole in the memo must carry its virtual hosts to the next push:
    otherwise a push with nothing changed forgets them, and the next service rebuilds them all."""
    from exitgate.envoy import routes

    built: list[str] = []
    real = routes.virtual_host
    monkeypatch.setattr(routes, "virtual_host", lambda v: (built.append(v.name), real(v))[1])

    def table(n: int) -> ir.ProxyConfig:
        hosts = tuple(ir.VirtualHost(f"svc-{i}.example:80", (f"svc-{i}.example",), (
            ir.Route("default", clusters=(ir.WeightedCluster(f"outbound|80||svc-{i}.example", 100),)),))
            for i in range(n))
        return ir.ProxyConfig((), (ir.RouteConfig("80", hosts),), (), ())

    memo = ProtoMemo()
    for n in (3, 3, 3, 4):  # three pushes of the same table, then one host more
        built.clear()
        xds_resources(table(n), {}, memo)
        memo.next_push()
    assert built == ["svc-3.example:80"]
