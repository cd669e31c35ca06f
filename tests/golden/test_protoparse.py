"""``envoy.protoparse`` builds exactly the messages ``json_format.ParseDict`` builds: every
resource of every golden case (sidecar, gateway, captured sidecar), parsed both ways, compared
message by message; and the errors of bad input are ParseDict's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import json_format, struct_pb2, symbol_database

from exitgate.api.loader import load_paths
from exitgate.envoy import protoparse
from exitgate.envoy.snapshot import xds_resources
from exitgate.mesh import load_mesh
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot
from tests.golden.test_translation_golden import CASES, GOLDEN_NETNS, SIDECAR_PORT


def _all_resources(case: Path) -> list[Any]:
    loaded = load_paths([case])
    mesh_file = case.with_name(case.name.replace(".in.yaml", ".mesh.yaml"))
    mesh, _ = load_mesh(mesh_file if mesh_file.exists() else None)
    assert loaded.ok and mesh is not None
    snap = Snapshot(list(loaded.resources), mesh)
    proxies = [translate_sidecar(snap, mesh.workloads[0], SIDECAR_PORT)[0], translate_gateway(snap, mesh.gateways[0])[0],
               translate_sidecar(snap, mesh.workloads[0], SIDECAR_PORT, capture_netns=GOLDEN_NETNS)[0]]
    return [xds_resources(pc, {}) for pc in proxies]


@pytest.mark.parametrize("case", sorted(CASES.glob("*.in.yaml")), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_every_golden_resource_parses_as_parse_dict_parses_it(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _all_resources(case)
    # The reference: ParseDict of the same data (a ``Reused`` part as its content), each Any's
    # value serialized deterministically, as exitgate serializes it (ParseDict packs in the
    # process's map order).
    monkeypatch.setattr(protoparse, "parse", lambda data, message: _deterministic_anys(
        json_format.ParseDict(protoparse.unwrapped(data), message)))
    slow = _all_resources(case)
    assert fast == slow
    assert sum(len(by_name) for proxy in fast for by_name in proxy.values()) > 0


def _deterministic_anys(message: Any) -> Any:
    """``message`` with every Any inside (at any depth) holding its value serialized
    deterministically."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        entry = field.message_type.GetOptions().map_entry
        if entry:
            items = list(value.values()) if field.message_type.fields_by_name["value"].message_type else []
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            _deterministic_anys(item)
    if message.DESCRIPTOR.full_name == "google.protobuf.Any" and message.type_url:
        inner = symbol_database.Default().GetSymbol(message.type_url.rsplit("/", 1)[-1])()
        inner.ParseFromString(message.value)
        message.value = _deterministic_anys(inner).SerializeToString(deterministic=True)
    return message


def _both(data: Any, message_type: Any) -> tuple[Any, Any]:
    return protoparse.parse(data, message_type()), json_format.ParseDict(data, message_type())


@pytest.mark.parametrize("data", [
    {"name": "c", "connect_timeout": "1.5s", "type": "STRICT_DNS", "dns_lookup_family": 1},
    {"name": "c", "connectTimeout": "2s", "per_connection_buffer_limit_bytes": 32768},
    {"name": "c", "per_connection_buffer_limit_bytes": "32768", "lb_policy": "LEAST_REQUEST"},
    {"name": "c", "metadata": {"filter_metadata": {"istio": {"a": [1, "x", {"b": None}], "c": True}}}},
    {"name": "c", "transport_socket": {"name": "tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": "x.example.com", "common_tls_context": {"alpn_protocols": ["h2", "http/1.1"]}}}},
    {"name": "c", "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}},
    {"name": "c", "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}}, "lb_subset_config": None},
    {"name": "c", "circuit_breakers": {"thresholds": [{"max_connections": 4294967295, "max_retries": 3}]}},
])
def test_shapes_parse_alike(data: dict[str, Any]) -> None:
    fast, slow = _both(data, cluster_pb2.Cluster)
    assert fast == slow


def test_bytes_are_base64_and_wrappers_take_scalars() -> None:
    fast, slow = _both({"inline_bytes": "aGVsbG8="}, base_pb2.DataSource)
    assert fast == slow and fast.inline_bytes == b"hello"
    fast, slow = _both({"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c", "timeout": "0s",
                        "retry_policy": {"num_retries": 2, "retry_on": "connect-failure"}},
                        "typed_per_filter_config": {}}, route_components_pb2.Route)
    assert fast == slow


@pytest.mark.parametrize("data, message", [
    ({"name": "c", "no_such_field": 1}, 'has no field named "no_such_field"'),
    ({"name": "c", "type": "NO_SUCH_TYPE"}, "NO_SUCH_TYPE"),
    ({"name": "c", "connect_timeout": "forever"}, "connect_timeout"),
    ({"name": "c", "cluster_type": {"name": "x"}, "type": "STATIC"}, "oneof"),
    ({"name": 5}, "name"),
])
def test_bad_input_fails_as_parse_dict_fails(data: dict[str, Any], message: str) -> None:
    with pytest.raises(json_format.ParseError) as slow:
        json_format.ParseDict(data, cluster_pb2.Cluster())
    with pytest.raises(json_format.ParseError) as fast:
        protoparse.parse(data, cluster_pb2.Cluster())
    assert message in str(slow.value) and message in str(fast.value)


def test_a_value_field_takes_null() -> None:
    fast, slow = _both({"fields": {"a": None}}, struct_pb2.Struct)
    assert fast == slow


@pytest.mark.parametrize("fields", [
    {"s": "x", "t": True, "f": False, "zero": 0, "n": -3, "x": 2.5, "big": 2**60, "none": None},
    {"nested": {"a": {"b": [1, "two", None, False, {"c": []}]}, "empty": {}}, "list": [], "u": "é ✓"},
])
def test_a_struct_is_written_as_struct_update_writes_it(fields: dict[str, Any]) -> None:
    data = {"name": "c", "metadata": {"filter_metadata": {"istio": fields, "other": {"k": "v"}}}}
    fast, slow = _both(data, cluster_pb2.Cluster)
    assert fast == slow
    assert fast.SerializeToString(deterministic=True) == slow.SerializeToString(deterministic=True)


def test_integers_written_as_strings_and_the_same_any_twice_parse_alike() -> None:
    route = {"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c", "retry_policy": {
        "host_selection_retry_max_attempts": "5", "retry_host_predicate": [
            {"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}]}}}
    for _ in range(2):  # the second from the memo of the Any's bytes
        fast, slow = _both(route, route_components_pb2.Route)
        assert fast == slow and fast.route.retry_policy.host_selection_retry_max_attempts == 5
    other = {**route, "route": {**route["route"], "retry_policy": {"retry_host_predicate": [
        {"name": "x", "typed_config": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "a"}}]}}}
    fast, slow = _both(other, route_components_pb2.Route)
    assert fast == slow


@pytest.mark.parametrize("data", [
    {"address": "127.0.0.1", "port_value": "99999999999"},
    {"address": "127.0.0.1", "port_value": "8 0"},
])
def test_a_bad_integer_string_fails_as_parse_dict_fails(data: dict[str, Any]) -> None:
    from envoy.config.core.v3 import address_pb2
    with pytest.raises(json_format.ParseError) as slow:
        json_format.ParseDict(data, address_pb2.SocketAddress())
    with pytest.raises(json_format.ParseError) as fast:
        protoparse.parse(data, address_pb2.SocketAddress())
    assert str(fast.value) == str(slow.value)


def test_reused_parts_parse_as_their_content_wherever_they_stand() -> None:
    cb = {"thresholds": [{"max_connections": 4294967295, "track_remaining": True}]}
    options = {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
               "explicit_http_config": {"http_protocol_options": {}}}
    data = {"name": "c", "circuit_breakers": protoparse.Reused(cb),
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":
                                                 protoparse.Reused(options)},
            "load_assignment": {"cluster_name": "c", "endpoints": [protoparse.Reused({"lb_endpoints": []})]}}
    plain = protoparse.unwrapped(data)
    assert plain == {**data, "circuit_breakers": cb, "typed_extension_protocol_options": {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options},
        "load_assignment": {"cluster_name": "c", "endpoints": [{"lb_endpoints": []}]}}
    for _ in range(2):  # the second from the memo
        fast = protoparse.parse(data, cluster_pb2.Cluster())
        assert fast == json_format.ParseDict(plain, cluster_pb2.Cluster())
        assert fast.HasField("circuit_breakers") and len(fast.load_assignment.endpoints) == 1
    # A mistake inside a reused part is ParseDict's error, as anywhere else.
    with pytest.raises(json_format.ParseError, match="no_such_field"):
        protoparse.parse({"name": "c", "circuit_breakers": protoparse.Reused({"no_such_field": 1})},
                         cluster_pb2.Cluster())


def test_an_any_holds_the_same_bytes_whatever_the_order_of_its_maps() -> None:
    # Istio's TypedStruct carries a Struct (the stats loggers' configuration): its map must not
    # come out in the process's hash order, or every control plane sends other listener bytes.
    def typed(fields: dict[str, Any]) -> dict[str, Any]:
        return {"name": "l", "typed_config": {"@type": "type.googleapis.com/xds.type.v3.TypedStruct",
                                              "type_url": "type.googleapis.com/x.y", "value": fields}}
    one = {f"k{i}": i for i in range(40)}
    other = dict(reversed(one.items()))
    first = protoparse.parse(typed(one), listener_components_pb2.Filter())
    second = protoparse.parse(typed(other), listener_components_pb2.Filter())
    assert first.typed_config.value == second.typed_config.value
