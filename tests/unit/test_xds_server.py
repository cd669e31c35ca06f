"""ADS server and snapshot cache, driven by a real gRPC client over loopback."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from exitgate.xds.cache import (
    CLUSTER_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    SnapshotCache,
)
from exitgate.xds.server import TOKEN_METADATA_KEY, AdsServer, EventKind, XdsEvent

NODE = "router~127.0.0.1~gw.istio-system~istio-system.svc.cluster.local"
TOKEN = "s3cret"
TIMEOUT = 5.0


def clusters(*names: str, timeout_s: int = 1) -> dict[str, cluster_pb2.Cluster]:
    out = {}
    for n in names:
        c = cluster_pb2.Cluster(name=n)
        c.connect_timeout.seconds = timeout_s
        out[n] = c
    return out


def listeners(*names: str, port: int = 10000) -> dict[str, listener_pb2.Listener]:
    out = {}
    for n in names:
        lis = listener_pb2.Listener(name=n)
        lis.address.socket_address.address = "127.0.0.1"
        lis.address.socket_address.port_value = port
        out[n] = lis
    return out


def routes(*names: str, domain: str = "*") -> dict[str, route_pb2.RouteConfiguration]:
    vhost = route_components_pb2.VirtualHost(name="vh", domains=[domain])
    return {n: route_pb2.RouteConfiguration(name=n, virtual_hosts=[vhost]) for n in names}


def names_of(resp: discovery_pb2.DiscoveryResponse, msg_type: type[Any]) -> list[str]:
    out = []
    for packed in resp.resources:
        msg = msg_type()
        assert packed.Unpack(msg)
        out.append(msg.name)
    return out


def wait_until(pred: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class AdsClient:
    """One ADS stream: requests go through a queue, responses are read by a thread."""

    def __init__(self, port: int, token: str | None = TOKEN, node_id: str = NODE) -> None:
        self.node_id = node_id
        self._first = True
        self._requests: queue.Queue[discovery_pb2.DiscoveryRequest | None] = queue.Queue()
        self.responses: queue.Queue[discovery_pb2.DiscoveryResponse | grpc.RpcError | None] = queue.Queue()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        metadata = [(TOKEN_METADATA_KEY, token)] if token is not None else []
        self.call = stub.StreamAggregatedResources(self._generate(), metadata=metadata)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _generate(self) -> Iterator[discovery_pb2.DiscoveryRequest]:
        while (item := self._requests.get()) is not None:
            yield item

    def _pump(self) -> None:
        try:
            for resp in self.call:
                self.responses.put(resp)
            self.responses.put(None)  # the server ended the stream
        except grpc.RpcError as exc:
            self.responses.put(exc)

    def send(
        self,
        type_url: str,
        names: tuple[str, ...] = (),
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=names, version_info=version, response_nonce=nonce
        )
        if self._first:  # like Envoy with set_node_on_first_message_only
            req.node.id = self.node_id
            self._first = False
        if error is not None:
            req.error_detail.code = 13
            req.error_detail.message = error
        self._requests.put(req)

    def ack(self, resp: discovery_pb2.DiscoveryResponse, names: tuple[str, ...] = ()) -> None:
        self.send(resp.type_url, names, resp.version_info, resp.nonce)

    def recv(self, timeout: float = TIMEOUT) -> discovery_pb2.DiscoveryResponse:
        item = self.responses.get(timeout=timeout)
        assert isinstance(item, discovery_pb2.DiscoveryResponse), item
        return item

    def expect_nothing(self, timeout: float = 0.3) -> None:
        with pytest.raises(queue.Empty):
            item = self.responses.get(timeout=timeout)
            pytest.fail(f"unexpected response: {item}")

    def error(self, timeout: float = TIMEOUT) -> grpc.RpcError:
        item = self.responses.get(timeout=timeout)
        assert isinstance(item, grpc.RpcError), item
        return item

    def close(self) -> None:
        self._requests.put(None)
        self.call.cancel()
        self.channel.close()
        self._thread.join(TIMEOUT)


class Harness:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.events: list[XdsEvent] = []
        self.auth_calls: list[tuple[str, str]] = []
        self.server = AdsServer(self.cache, self._auth, self.events.append)
        self.port = self.server.start()
        self.clients: list[AdsClient] = []

    def _auth(self, node_id: str, token: str) -> bool:
        self.auth_calls.append((node_id, token))
        return token == TOKEN

    def client(self, token: str | None = TOKEN, node_id: str = NODE) -> AdsClient:
        c = AdsClient(self.port, token, node_id)
        self.clients.append(c)
        return c

    def events_of(self, kind: EventKind) -> list[XdsEvent]:
        return [e for e in list(self.events) if e.kind == kind]


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.server.stop(grace=0.5)
        for c in harness.clients:
            c.close()


def test_wildcard_cds_gets_all_clusters(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("b", "a")})
    c = h.client()
    c.send(CLUSTER_TYPE)
    resp = c.recv()
    assert resp.type_url == CLUSTER_TYPE
    assert resp.version_info == h.cache.version(NODE, CLUSTER_TYPE) != ""
    assert resp.nonce
    assert sorted(names_of(resp, cluster_pb2.Cluster)) == ["a", "b"]
    assert h.auth_calls == [(NODE, TOKEN)]
    wait_until(lambda: bool(h.events_of(EventKind.CONNECT)))
    status = h.server.statuses()[NODE]
    assert status.connected and status.types[CLUSTER_TYPE].sent_version == resp.version_info


def test_ack_is_recorded_and_not_answered(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a")})
    c = h.client()
    c.send(CLUSTER_TYPE)
    resp = c.recv()
    c.ack(resp)
    wait_until(lambda: bool(h.events_of(EventKind.ACK)))
    ack = h.events_of(EventKind.ACK)[0]
    assert (ack.node_id, ack.type_url, ack.version) == (NODE, CLUSTER_TYPE, resp.version_info)
    status = h.server.statuses()[NODE]
    assert status.types[CLUSTER_TYPE].acked_version == resp.version_info
    assert status.in_sync(h.cache.versions(NODE))
    c.expect_nothing()


def test_versions_and_nonces_change_per_response(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a")})
    c = h.client()
    c.send(CLUSTER_TYPE)
    first = c.recv()
    c.ack(first)
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a", "b")})
    second = c.recv()
    assert second.nonce != first.nonce
    assert second.version_info != first.version_info
    assert sorted(names_of(second, cluster_pb2.Cluster)) == ["a", "b"]
    # The same content again keeps the version and pushes nothing.
    before = h.cache.version(NODE, CLUSTER_TYPE)
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("b", "a")})
    assert h.cache.version(NODE, CLUSTER_TYPE) == before
    c.expect_nothing()


def test_nack_is_recorded_reported_and_not_resent(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {LISTENER_TYPE: listeners("l1")})
    c = h.client()
    c.send(LISTENER_TYPE)
    good = c.recv()
    c.ack(good)
    wait_until(lambda: bool(h.events_of(EventKind.ACK)))
    h.cache.set_snapshot(NODE, {LISTENER_TYPE: listeners("l1", port=1)})
    bad = c.recv()
    # Envoy's NACK: the nonce of the rejected response, the version it still runs.
    c.send(LISTENER_TYPE, version=good.version_info, nonce=bad.nonce, error="port 1: Permission denied")
    wait_until(lambda: bool(h.events_of(EventKind.NACK)))
    nack = h.events_of(EventKind.NACK)[0]
    assert (nack.type_url, nack.version) == (LISTENER_TYPE, bad.version_info)
    assert nack.error == "port 1: Permission denied"
    st = h.server.statuses()[NODE].types[LISTENER_TYPE]
    assert st.acked_version == good.version_info  # the previous config is what runs
    assert st.nack_error == "port 1: Permission denied" and st.nack_time is not None
    assert st.rejected
    c.expect_nothing()  # no resend of a rejected version
    # A fixed snapshot is pushed, and its ACK clears the rejection.
    h.cache.set_snapshot(NODE, {LISTENER_TYPE: listeners("l1", port=10001)})
    fixed = c.recv()
    c.ack(fixed)
    wait_until(lambda: h.server.statuses()[NODE].types[LISTENER_TYPE].acked_version == fixed.version_info)
    assert not h.server.statuses()[NODE].types[LISTENER_TYPE].rejected


def test_stale_nonce_is_ignored(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {ROUTE_TYPE: routes("r1", "r2")})
    c = h.client()
    c.send(ROUTE_TYPE, ("r1",))
    first = c.recv()
    h.cache.set_snapshot(NODE, {ROUTE_TYPE: routes("r1", "r2", domain="x")})
    second = c.recv()
    # An ACK of the replaced response, even one adding a name, is stale: nothing recorded or sent.
    c.send(ROUTE_TYPE, ("r1", "r2"), first.version_info, first.nonce)
    c.expect_nothing()
    assert not h.events_of(EventKind.ACK)
    assert h.server.statuses()[NODE].types[ROUTE_TYPE].acked_version is None
    # The same request with the current nonce is both an ACK and a subscription change.
    c.send(ROUTE_TYPE, ("r1", "r2"), second.version_info, second.nonce)
    third = c.recv()
    assert sorted(names_of(third, route_pb2.RouteConfiguration)) == ["r1", "r2"]
    assert third.version_info == second.version_info
    assert [e.version for e in h.events_of(EventKind.ACK)] == [second.version_info]


def test_only_changed_types_are_pushed(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a"), LISTENER_TYPE: listeners("l1")})
    c = h.client()
    c.send(CLUSTER_TYPE)
    c.ack(cds := c.recv())
    c.send(LISTENER_TYPE)
    c.ack(lds := c.recv())
    summary = h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a"), LISTENER_TYPE: listeners("l1", "l2")})
    assert f"CDS={cds.version_info}" in summary and f"LDS={lds.version_info}" not in summary
    pushed = c.recv()
    assert pushed.type_url == LISTENER_TYPE
    assert sorted(names_of(pushed, listener_pb2.Listener)) == ["l1", "l2"]
    c.expect_nothing()


def test_request_before_snapshot_is_answered_when_it_arrives(h: Harness) -> None:
    c = h.client()
    c.send(CLUSTER_TYPE)
    c.expect_nothing()
    h.cache.set_snapshot(NODE, {})  # no clusters at all: a wildcard type still gets an answer
    resp = c.recv()
    assert resp.type_url == CLUSTER_TYPE and len(resp.resources) == 0 and resp.version_info


def test_rds_named_subscription(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {ROUTE_TYPE: routes("r1", "r2", "r3")})
    c = h.client()
    c.send(ROUTE_TYPE, ("r1",))
    first = c.recv()
    assert names_of(first, route_pb2.RouteConfiguration) == ["r1"]
    c.ack(first, ("r1",))
    # Adding a name is answered at once with every subscribed name, version unchanged.
    c.send(ROUTE_TYPE, ("r1", "r2"), first.version_info, first.nonce)
    second = c.recv()
    assert names_of(second, route_pb2.RouteConfiguration) == ["r1", "r2"]
    assert second.version_info == first.version_info and second.nonce != first.nonce
    # A name that does not exist yet: the existing ones are sent, the new one once it appears.
    c.send(ROUTE_TYPE, ("r1", "r2", "r4"), second.version_info, second.nonce)
    third = c.recv()
    assert names_of(third, route_pb2.RouteConfiguration) == ["r1", "r2"]
    c.ack(third, ("r1", "r2", "r4"))
    h.cache.set_snapshot(NODE, {ROUTE_TYPE: routes("r1", "r2", "r3", "r4")})
    fourth = c.recv()
    assert names_of(fourth, route_pb2.RouteConfiguration) == ["r1", "r2", "r4"]


def test_sds_waits_for_a_missing_secret(h: Harness) -> None:
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    h.cache.set_snapshot(NODE, {})
    c = h.client()
    c.send(SECRET_TYPE, ("default",))
    c.expect_nothing()
    h.cache.set_snapshot(NODE, {SECRET_TYPE: {"default": secret_pb2.Secret(name="default")}})
    resp = c.recv()
    assert resp.type_url == SECRET_TYPE and len(resp.resources) == 1


def test_a_replaced_secret_arrives_before_the_cluster_that_uses_it(h: Harness) -> None:
    """Make-before-break across SDS and CDS: when a client credential is replaced, the cluster
    changes too (its credential version); the secret must reach Envoy first, or connections
    opened in between would carry the old certificate."""
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    def snapshot(version: int) -> dict[str, dict[str, Any]]:
        secret = secret_pb2.Secret(name="kubernetes://client")
        secret.tls_certificate.certificate_chain.inline_string = f"cert {version}"
        return {CLUSTER_TYPE: clusters("outbound|443||example.com", timeout_s=version),
                SECRET_TYPE: {"kubernetes://client": secret}}

    h.cache.set_snapshot(NODE, snapshot(1))
    c = h.client()
    c.send(CLUSTER_TYPE)
    c.ack(c.recv())
    c.send(SECRET_TYPE, ("kubernetes://client",))
    c.ack(c.recv(), ("kubernetes://client",))
    h.cache.set_snapshot(NODE, snapshot(2))
    assert [c.recv().type_url, c.recv().type_url] == [SECRET_TYPE, CLUSTER_TYPE]


@pytest.mark.parametrize("token", [None, "wrong"])
def test_bad_token_is_unauthenticated(h: Harness, token: str | None) -> None:
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a")})
    c = h.client(token=token)
    c.send(CLUSTER_TYPE)
    err = c.error()
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert NODE not in h.server.statuses()
    assert not h.events


def test_disconnect_and_stop_end_streams_promptly(h: Harness) -> None:
    h.cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a")})
    leaving = h.client(node_id="sidecar~127.0.0.2~a.ns~ns.svc.cluster.local")
    leaving.send(CLUSTER_TYPE)
    leaving.expect_nothing()  # that node has no snapshot
    leaving.close()
    wait_until(lambda: bool(h.events_of(EventKind.DISCONNECT)))
    assert not h.server.statuses()[leaving.node_id].connected

    staying = [h.client() for _ in range(3)]
    for c in staying:
        c.send(CLUSTER_TYPE)
        c.recv()
    wait_until(lambda: h.server.statuses()[NODE].streams == 3)
    started = time.monotonic()
    h.server.stop(grace=5.0)
    assert time.monotonic() - started < 2.0  # streams end on their own, well before the grace
    for c in staying:
        ended = c.responses.get(timeout=TIMEOUT)  # an OK end or a cancellation, but an end
        assert ended is None or isinstance(ended, grpc.RpcError), ended
    assert not h.server.statuses()[NODE].connected
    assert len(h.events_of(EventKind.DISCONNECT)) == 4
    assert not [t for t in threading.enumerate() if t.name.startswith("exitgate-xds")]


def test_cache_rejects_mismatched_resources() -> None:
    cache = SnapshotCache()
    with pytest.raises(ValueError, match="not a envoy.config.cluster.v3.Cluster"):
        cache.set_snapshot(NODE, {CLUSTER_TYPE: {"l": listener_pb2.Listener(name="l")}})
    with pytest.raises(ValueError, match="names itself"):
        cache.set_snapshot(NODE, {CLUSTER_TYPE: {"a": cluster_pb2.Cluster(name="b")}})
    assert cache.nodes() == []


def test_cache_copies_and_versions_per_type() -> None:
    cache = SnapshotCache()
    mine = clusters("a")
    cache.set_snapshot(NODE, {CLUSTER_TYPE: mine, LISTENER_TYPE: listeners("l")})
    versions = cache.versions(NODE)
    mine["a"].connect_timeout.seconds = 99  # the caller's object, not the cache's
    assert cache.get(NODE, CLUSTER_TYPE)[1]["a"].connect_timeout.seconds == 1
    gen = cache.generation(NODE)
    cache.set_snapshot(NODE, {CLUSTER_TYPE: clusters("a", timeout_s=2), LISTENER_TYPE: listeners("l")})
    assert cache.wait(NODE, gen, timeout=0) == gen + 1
    after = cache.versions(NODE)
    assert after[CLUSTER_TYPE] != versions[CLUSTER_TYPE]
    assert {t: v for t, v in after.items() if t != CLUSTER_TYPE} == {
        t: v for t, v in versions.items() if t != CLUSTER_TYPE
    }
    cache.remove(NODE)
    assert cache.get(NODE, CLUSTER_TYPE) == ("", {})


def test_silent_client_is_dropped() -> None:
    server = AdsServer(SnapshotCache(), lambda node, token: True, first_request_timeout=0.3)
    port = server.start()
    c = AdsClient(port)
    try:
        assert c.error().code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert server.statuses() == {}
    finally:
        server.stop(grace=0.5)
        c.close()
