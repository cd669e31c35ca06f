"""Incremental ADS, as a protocol state machine without sockets: what each request and each
cache change makes the stream send."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from exitgate.xds.cache import CLUSTER_TYPE, SECRET_TYPE, SnapshotCache
from exitgate.xds.delta import DeltaStream
from tests.unit.test_xds_server import clusters

NODE = "sidecar~127.0.0.1~sleep.default~default.svc.cluster.local"


class Recorder:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.log: list[tuple[str, str, str]] = []

    def _record_versions(self, node_id: str, type_url: str, *, sent: str = "", acked: str = "") -> None:
        self.log.append(("versions", sent, acked))

    def _record_ack(self, node_id: str, type_url: str, version: str) -> None:
        self.log.append(("ack", type_url, version))

    def _record_nack(self, node_id: str, type_url: str, version: str, running: str, error: str) -> None:
        self.log.append(("nack", version, error))


def snapshot(rec: Recorder, cds: dict[str, cluster_pb2.Cluster], sds: dict[str, secret_pb2.Secret] | None = None) -> None:
    rec.cache.set_snapshot(NODE, {CLUSTER_TYPE: cds, SECRET_TYPE: sds or {}})


def req(type_url: str = CLUSTER_TYPE, **kw: object) -> discovery_pb2.DeltaDiscoveryRequest:
    return discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, **kw)  # type: ignore[arg-type]


def names(resp: discovery_pb2.DeltaDiscoveryResponse) -> list[str]:
    return [r.name for r in resp.resources]


def test_wildcard_first_request_gets_everything_then_only_what_changed() -> None:
    rec = Recorder()
    snapshot(rec, clusters("a", "b", "c"))
    s = DeltaStream(rec, 1, NODE)
    [first] = s.handle_request(req())
    assert names(first) == ["a", "b", "c"] and not first.removed_resources
    assert first.resources[0].resource.type_url == CLUSTER_TYPE
    assert s.handle_request(req(response_nonce=first.nonce)) == []  # an ACK is not answered
    assert ("ack", CLUSTER_TYPE, first.system_version_info) in rec.log
    # One more cluster, one changed, one gone: exactly that is sent.
    snapshot(rec, {**clusters("a", "d"), **clusters("b", timeout_s=81)})
    [change] = s.handle_change()
    assert names(change) == ["b", "d"] and list(change.removed_resources) == ["c"]
    assert change.nonce != first.nonce and change.system_version_info != first.system_version_info
    assert s.handle_change() == []  # nothing more changed: nothing sent


def test_a_reconnect_gets_only_what_differs_from_what_envoy_holds() -> None:
    rec = Recorder()
    snapshot(rec, clusters("a", "b"))
    [first] = DeltaStream(rec, 1, NODE).handle_request(req())
    held = {r.name: r.version for r in first.resources}
    snapshot(rec, {**clusters("a"), **clusters("b", timeout_s=82)})
    [again] = DeltaStream(rec, 2, NODE).handle_request(req(initial_resource_versions=held))
    assert names(again) == ["b"]
    # Nothing differs: the first wildcard request is still answered (empty) so Envoy initialises.
    held2 = {**held, "b": again.resources[0].version}
    [empty] = DeltaStream(rec, 3, NODE).handle_request(req(initial_resource_versions=held2))
    assert names(empty) == [] and not empty.removed_resources and empty.nonce


def test_named_subscriptions_and_unsubscribe() -> None:
    rec = Recorder()
    secret = {n: secret_pb2.Secret(name=n) for n in ("default", "ROOTCA", "other")}
    snapshot(rec, {}, secret)
    s = DeltaStream(rec, 1, NODE)
    [r1] = s.handle_request(req(SECRET_TYPE, resource_names_subscribe=["default", "missing"]))
    assert names(r1) == ["default"]  # a missing secret is not invented; it comes when it exists
    [r2] = s.handle_request(req(SECRET_TYPE, response_nonce=r1.nonce, resource_names_subscribe=["ROOTCA"]))
    assert names(r2) == ["ROOTCA"]
    s.handle_request(req(SECRET_TYPE, response_nonce=r2.nonce, resource_names_unsubscribe=["default"]))
    snapshot(rec, {}, {**{n: secret_pb2.Secret(name=n) for n in ("ROOTCA", "other")},
                       "default": secret_pb2.Secret(name="default", validation_context={"trusted_ca": {"inline_bytes": b"x"}}),
                       "missing": secret_pb2.Secret(name="missing")})
    [r3] = s.handle_change()
    assert names(r3) == ["missing"]  # "default" changed but is no longer subscribed


def test_a_nack_is_recorded_and_not_resent_and_a_stale_nonce_acks_nothing() -> None:
    rec = Recorder()
    snapshot(rec, clusters("a"))
    s = DeltaStream(rec, 1, NODE)
    [r1] = s.handle_request(req())
    s.handle_request(req(response_nonce=r1.nonce))
    snapshot(rec, clusters("a", timeout_s=90))
    [r2] = s.handle_change()
    error = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE, response_nonce=r2.nonce)
    error.error_detail.message = "bad cluster"
    assert s.handle_request(error) == []
    assert ("nack", r2.system_version_info, "bad cluster") in rec.log
    assert s.handle_change() == []
    rec.log.clear()
    assert s.handle_request(req(response_nonce=r1.nonce)) == []
    assert not any(e[0] == "ack" for e in rec.log)


def test_a_replaced_secret_goes_before_the_cluster_that_uses_it() -> None:
    rec = Recorder()
    snapshot(rec, clusters("c"), {"cred": secret_pb2.Secret(name="cred")})
    s = DeltaStream(rec, 1, NODE)
    s.handle_request(req())
    s.handle_request(req(SECRET_TYPE, resource_names_subscribe=["cred"]))
    new_secret = secret_pb2.Secret(name="cred", validation_context={"trusted_ca": {"inline_bytes": b"new"}})
    snapshot(rec, clusters("c", timeout_s=99), {"cred": new_secret})
    out = s.handle_change()
    assert [r.type_url for r in out] == [SECRET_TYPE, CLUSTER_TYPE]


def test_resources_are_the_cache_bytes() -> None:
    rec = Recorder()
    snapshot(rec, clusters("a"))
    [r] = DeltaStream(rec, 1, NODE).handle_request(req())
    c = cluster_pb2.Cluster()
    assert r.resources[0].resource.Unpack(c) and c.name == "a"
    assert isinstance(r.resources[0].resource, any_pb2.Any)
