"""ADS server: serves a :class:`~exitgate.xds.cache.SnapshotCache` to Envoys over gRPC.

Incremental (``DeltaAggregatedResources``, the protocol state in :mod:`exitgate.xds.delta`) or
State of the World (``StreamAggregatedResources``), v3, aggregated: one stream per Envoy carries
every type. For State of the World, per stream and type URL it tracks the subscribed names, the
last version and nonce sent, and applies the protocol rules Envoy relies on:

- a request whose ``response_nonce`` is not the latest one sent for its type is stale: ignored;
- a request echoing the latest nonce is an ACK, or a NACK when ``error_detail`` is set; a NACK is
  recorded and reported, never re-pushed (Envoy keeps serving its last good config);
- a request that adds names is answered at once, even if no version changed (a listener stays
  warming until the secret it named arrives);
- CDS/LDS are wildcard (no names = all); RDS/SDS/EDS responses carry every subscribed name that
  exists;
- a cache change pushes only the types whose version changed.

Every stream must carry ``x-exitgate-token`` metadata; the ``authenticate(node_id, token)``
callback decides on the first request (the only one carrying the node with
``set_node_on_first_message_only``), otherwise the stream ends with UNAUTHENTICATED.
"""

from __future__ import annotations

import collections
import copy
import enum
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from exitgate.xds.cache import WILDCARD_TYPES, SnapshotCache, change_order, short_type_name
from exitgate.xds.delta import DeltaStream

TOKEN_METADATA_KEY = "x-exitgate-token"
CONTROL_PLANE_ID = "exitgate"

_log = logging.getLogger(__name__)

# Queue items besides DiscoveryRequests: the cache changed / the stream must end.
_CHANGED = object()
_STOP = object()

# How long stop() waits for reader threads after gRPC has ended every RPC.
_THREAD_JOIN_SECONDS = 2.0


def metric_type(type_url: str) -> str:
    """Istio's ``type`` label of its xDS metrics: ``cds``, ``lds``, ``rds``, ``eds``, ``sds``."""
    return short_type_name(type_url).lower()


class EventKind(enum.StrEnum):
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    ACK = "ack"
    NACK = "nack"


@dataclass(frozen=True)
class XdsEvent:
    """Something a proxy did; ``type_url``/``version``/``error`` are set for ACK and NACK
    (``version`` is the rejected one for a NACK)."""

    kind: EventKind
    node_id: str
    type_url: str | None = None
    version: str | None = None
    error: str | None = None
    time: float = field(default_factory=time.time)


@dataclass
class TypeStatus:
    """One type URL of one proxy. Times are wall-clock seconds (``time.time()``)."""

    sent_version: str | None = None
    sent_time: float | None = None
    acked_version: str | None = None
    acked_time: float | None = None
    nack_error: str | None = None
    nack_version: str | None = None
    nack_time: float | None = None

    @property
    def rejected(self) -> bool:
        """The version sent last was NACKed (Envoy runs ``acked_version`` instead)."""
        return self.nack_version is not None and self.nack_version == self.sent_version


@dataclass
class ProxyStatus:
    node_id: str
    connected: bool = False
    # More than one during a reconnect, while the old stream has not noticed it is dead.
    streams: int = 0
    peer: str | None = None
    connected_time: float | None = None
    disconnected_time: float | None = None
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def in_sync(self, versions: Mapping[str, str]) -> bool:
        """Whether the proxy acknowledged every given version (from ``SnapshotCache.versions``)
        of the types it subscribed to."""
        return all(
            status.acked_version == versions.get(type_url)
            for type_url, status in self.types.items()
            if status.sent_version is not None
        )


@dataclass
class _Subscription:
    names: frozenset[str]
    wildcard: bool
    sent_version: str | None = None
    nonce: str | None = None


class _Stream:
    """Protocol state of one ADS stream, used only by the stream's handler thread."""

    def __init__(self, server: AdsServer, stream_id: int, node_id: str) -> None:
        self.server = server
        self.stream_id = stream_id
        self.node_id = node_id
        self._subs: dict[str, _Subscription] = {}
        self._nonces = itertools.count(1)

    def handle_request(self, req: discovery_pb2.DiscoveryRequest) -> list[discovery_pb2.DiscoveryResponse]:
        type_url = req.type_url
        if not type_url:
            _log.warning("node %s sent a request without type_url; ignored", self.node_id)
            return []
        sub = self._subs.get(type_url)
        if sub is not None and sub.nonce is not None and req.response_nonce:
            if req.response_nonce != sub.nonce:
                # Answers a response that a newer one has replaced: Envoy will answer that too.
                _log.debug("node %s: stale nonce %s for %s", self.node_id, req.response_nonce, type_url)
                return []
            if req.HasField("error_detail"):
                self.server._record_nack(
                    self.node_id, type_url, sub.sent_version or "", req.version_info, req.error_detail.message
                )
            else:
                self.server._record_ack(self.node_id, type_url, req.version_info)
        elif req.version_info:
            # First request of the type on this stream (a reconnect): Envoy tells what it runs.
            self.server._record_versions(self.node_id, type_url, acked=req.version_info)

        names = frozenset(req.resource_names)
        wildcard = type_url in WILDCARD_TYPES and (not names or "*" in names)
        names = names - {"*"}
        first = sub is None
        if sub is None:
            sub = self._subs[type_url] = _Subscription(names, wildcard)
            added = False
        else:
            added = bool(names - sub.names) or (wildcard and not sub.wildcard)
            sub.names, sub.wildcard = names, wildcard
        # Always answer the first request of a type on a stream, even if Envoy claims to have the
        # version already: it costs one response and makes a reconnect never wait for a change.
        current = self.server.cache.version(self.node_id, type_url)
        if first or added or (current and current != sub.sent_version):
            response = self._respond(type_url, sub)
            return [response] if response is not None else []
        return []

    def handle_change(self) -> list[discovery_pb2.DiscoveryResponse]:
        responses = []
        # Secrets Envoy already asked for go first: a replaced client credential must be in
        # place before the cluster that uses it is replaced (its credential version changes with
        # it), or connections opened in between would carry the old certificate. Secrets not
        # yet named are asked for once the clusters and listeners naming them arrive.
        for type_url in sorted(self._subs, key=change_order):
            sub = self._subs[type_url]
            current = self.server.cache.version(self.node_id, type_url)
            if current and current != sub.sent_version:
                response = self._respond(type_url, sub)
                if response is not None:
                    responses.append(response)
        return responses

    def _respond(self, type_url: str, sub: _Subscription) -> discovery_pb2.DiscoveryResponse | None:
        names = None if sub.wildcard else sub.names
        version, resources = self.server.cache.get_packed(self.node_id, type_url, names)
        if not version:
            return None  # no snapshot for this node yet: answer once there is one
        if names is not None and not resources:
            # Nothing named exists: an empty answer would not tell Envoy anything (absence does
            # not delete a named resource), so wait for the resources to appear.
            return None
        nonce = f"{self.stream_id}-{next(self._nonces)}"
        sub.sent_version, sub.nonce = version, nonce
        self.server._record_versions(self.node_id, type_url, sent=version)
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, resources=resources, type_url=type_url, nonce=nonce
        )
        response.control_plane.identifier = CONTROL_PLANE_ID
        return response


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: AdsServer) -> None:
        self._server = server

    def StreamAggregatedResources(  # noqa: N802 (gRPC's name)
        self,
        request_iterator: Iterator[discovery_pb2.DiscoveryRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[discovery_pb2.DiscoveryResponse]:
        return self._server._serve_stream(request_iterator, context, delta=False)

    def DeltaAggregatedResources(  # noqa: N802 (gRPC's name)
        self,
        request_iterator: Iterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[discovery_pb2.DeltaDiscoveryResponse]:
        return self._server._serve_stream(request_iterator, context, delta=True)


class AdsServer:
    """The ADS gRPC server. ``authenticate(node_id, token)`` must be thread-safe (compare tokens
    with ``hmac.compare_digest``); ``on_event`` is called from stream threads, without locks held,
    and must not block for long."""

    def __init__(
        self,
        cache: SnapshotCache,
        authenticate: Callable[[str, str], bool],
        on_event: Callable[[XdsEvent], None] | None = None,
        *,
        max_streams: int = 64,
        first_request_timeout: float = 10.0,
    ) -> None:
        self.cache = cache
        self._authenticate = authenticate
        self._on_event = on_event
        self._max_streams = max_streams
        self._first_request_timeout = first_request_timeout
        self._lock = threading.Lock()
        self._statuses: dict[str, ProxyStatus] = {}
        # Responses sent and NACKs received, by Istio's metric type ("cds", "lds", ...): the
        # control plane's pilot_xds_pushes and pilot_total_xds_rejects.
        self.pushes: collections.Counter[str] = collections.Counter()
        self.rejects: collections.Counter[str] = collections.Counter()
        # Each live stream's inbox, for stop() to wake it: requests, _CHANGED and _STOP go there.
        self._inboxes: dict[int, queue.SimpleQueue[object]] = {}
        self._readers: set[threading.Thread] = set()
        self._stream_ids = itertools.count(1)
        self._server: grpc.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind and start serving; return the bound port. A server starts once."""
        if self._server is not None or self._stopping:
            raise RuntimeError("AdsServer.start() may be called once")
        # Each stream holds one pool thread for its whole life (plus a reader thread of its own);
        # a few spare threads keep a new stream from waiting behind long-lived ones.
        self._executor = ThreadPoolExecutor(
            max_workers=self._max_streams + 4, thread_name_prefix="exitgate-xds"
        )
        server = grpc.server(
            self._executor,
            # Beyond this many streams gRPC answers RESOURCE_EXHAUSTED instead of queueing a
            # stream that would never be served.
            maximum_concurrent_rpcs=self._max_streams,
            options=[
                # gRPC sets SO_REUSEPORT by default, which would let two servers share a port silently.
                ("grpc.so_reuseport", 0),
                # Envoy pings idle xDS streams (the bootstrap's connection_keepalive, every 30 s).
                # gRPC's default policy allows one ping without data per 5 minutes and resets
                # the stream after two "strikes" (seen: every ~130 s, each reset re-sending the
                # whole configuration). Accept pings every 10 s, without calls, never striking.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address}: {exc}") from exc
        if bound == 0:
            raise OSError(f"cannot listen on {address}")
        server.start()
        self._server = server
        return int(bound)

    def stop(self, grace: float = 1.0) -> None:
        """End every stream and stop serving. Returns once the handler threads have finished."""
        with self._lock:
            self._stopping = True
            inboxes = list(self._inboxes.values())
        # Streams return on _STOP right away; gRPC's grace only matters for one blocked in a send.
        for inbox in inboxes:
            inbox.put(_STOP)
        if self._server is not None:
            self._server.stop(grace).wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        with self._lock:
            readers = list(self._readers)
        for reader in readers:
            reader.join(_THREAD_JOIN_SECONDS)

    def statuses(self) -> dict[str, ProxyStatus]:
        """A copy of every known proxy's status, connected or not, by node ID."""
        with self._lock:
            return copy.deepcopy(self._statuses)

    def status(self, node_id: str) -> ProxyStatus | None:
        with self._lock:
            status = self._statuses.get(node_id)
            return copy.deepcopy(status) if status is not None else None

    # -- stream handling ---------------------------------------------------------------------

    def _serve_stream(
        self,
        request_iterator: Iterator[Any],
        context: grpc.ServicerContext,
        delta: bool,
    ) -> Iterator[Any]:
        # A reader thread feeds the inbox from the start, so that the handler can wait for the
        # first request with a timeout (a silent client must not hold a pool thread forever) and
        # later wait for requests and cache changes in one place.
        inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        with self._lock:
            if self._stopping:
                context.abort(grpc.StatusCode.UNAVAILABLE, "control plane is stopping")
            stream_id = next(self._stream_ids)
            self._inboxes[stream_id] = inbox
            reader = threading.Thread(
                target=self._read_requests, args=(request_iterator, inbox), daemon=True,
                name=f"exitgate-xds-reader-{stream_id}",
            )
            # Finished readers are dropped here rather than by themselves, so that stop() can
            # join one that has left its loop but not yet exited. Started under the lock: a
            # thread not yet started is not alive either, and another stream's pruning would
            # drop it unjoined.
            self._readers = {t for t in self._readers if t.is_alive()}
            self._readers.add(reader)
            reader.start()
        # Fires when the RPC ends in any way (client gone, server stopping): unblocks the loop.
        context.add_callback(lambda: inbox.put(_STOP))
        try:
            yield from self._run_stream(stream_id, inbox, context, delta)
        finally:
            with self._lock:
                del self._inboxes[stream_id]

    def _run_stream(
        self, stream_id: int, inbox: queue.SimpleQueue[object], context: grpc.ServicerContext, delta: bool
    ) -> Iterator[Any]:
        try:
            first = inbox.get(timeout=self._first_request_timeout)
        except queue.Empty:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no DiscoveryRequest in time")
        request_type = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
        if not isinstance(first, request_type):
            return  # the client left (or the server stopped) before saying anything
        node_id = first.node.id
        if not node_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry node.id")
        denial = self._denial(node_id, context)
        if denial is not None:
            _log.warning("xDS stream from %s for node %s refused: %s", context.peer(), node_id, denial)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, denial)

        stream: _Stream | DeltaStream = (DeltaStream(self, stream_id, node_id, CONTROL_PLANE_ID) if delta
                                         else _Stream(self, stream_id, node_id))
        cancel_watch = self.cache.watch(node_id, lambda: inbox.put(_CHANGED))
        self._record_connect(node_id, context.peer())
        try:
            yield from stream.handle_request(first)
            while (item := inbox.get()) is not _STOP:
                if item is _CHANGED:
                    yield from stream.handle_change()
                elif isinstance(item, request_type):
                    yield from stream.handle_request(item)
        finally:
            cancel_watch()
            self._record_disconnect(node_id)

    def _read_requests(
        self,
        request_iterator: Iterator[Any],
        sink: queue.SimpleQueue[object],
    ) -> None:
        try:
            for request in request_iterator:
                sink.put(request)
        except grpc.RpcError:
            pass  # cancelled: the client went away or the server is stopping
        except Exception:  # noqa: BLE001 - a reader must always hand _STOP to its stream
            _log.exception("reading an xDS stream failed")
        finally:
            sink.put(_STOP)

    def _denial(self, node_id: str, context: grpc.ServicerContext) -> str | None:
        """Why the stream is refused, None if its token is good for the node."""
        metadata = context.invocation_metadata() or ()
        tokens = [v for k, v in metadata if k == TOKEN_METADATA_KEY and isinstance(v, str)]
        if not tokens:
            return f"missing {TOKEN_METADATA_KEY} metadata"
        try:
            if self._authenticate(node_id, tokens[0]):
                return None
        except Exception:  # noqa: BLE001 - a failing check denies; it must not crash the stream
            _log.exception("authenticate(%r, ...) raised; denying", node_id)
        return f"node {node_id} is not authorized"

    # -- status and events -------------------------------------------------------------------

    def _emit(self, event: XdsEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a broken observer must not break the proxy's stream
            _log.exception("on_event callback raised for %s", event)

    def _type_status_locked(self, node_id: str, type_url: str) -> TypeStatus:
        proxy = self._statuses.setdefault(node_id, ProxyStatus(node_id))
        return proxy.types.setdefault(type_url, TypeStatus())

    def _record_connect(self, node_id: str, peer: str) -> None:
        with self._lock:
            proxy = self._statuses.setdefault(node_id, ProxyStatus(node_id))
            proxy.streams += 1
            proxy.connected, proxy.peer, proxy.connected_time = True, peer, time.time()
        _log.info("xDS: %s connected from %s", node_id, peer)
        self._emit(XdsEvent(EventKind.CONNECT, node_id))

    def _record_disconnect(self, node_id: str) -> None:
        with self._lock:
            proxy = self._statuses[node_id]
            proxy.streams -= 1
            proxy.connected = proxy.streams > 0
            if not proxy.connected:
                proxy.disconnected_time = time.time()
        _log.info("xDS: %s disconnected", node_id)
        self._emit(XdsEvent(EventKind.DISCONNECT, node_id))

    def _record_versions(self, node_id: str, type_url: str, *, sent: str = "", acked: str = "") -> None:
        now = time.time()
        with self._lock:
            status = self._type_status_locked(node_id, type_url)
            if sent:
                status.sent_version, status.sent_time = sent, now
                self.pushes[metric_type(type_url)] += 1
            if acked:
                status.acked_version, status.acked_time = acked, now

    def _record_ack(self, node_id: str, type_url: str, version: str) -> None:
        self._record_versions(node_id, type_url, acked=version)
        _log.debug("xDS: %s ACK %s %s", node_id, short_type_name(type_url), version)
        self._emit(XdsEvent(EventKind.ACK, node_id, type_url, version))

    def _record_nack(self, node_id: str, type_url: str, version: str, running: str, error: str) -> None:
        now = time.time()
        with self._lock:
            status = self._type_status_locked(node_id, type_url)
            status.nack_error, status.nack_version, status.nack_time = error, version, now
            self.rejects[metric_type(type_url)] += 1
            if running:
                # A NACK carries the version Envoy keeps running; its own ACK may have been
                # superseded (stale nonce) by the very push it now rejects.
                status.acked_version = running
        _log.warning("xDS: %s rejected %s %s: %s", node_id, short_type_name(type_url), version, error)
        self._emit(XdsEvent(EventKind.NACK, node_id, type_url, version, error, now))
