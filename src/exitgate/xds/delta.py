"""Incremental ("delta") ADS: the protocol state of one ``DeltaAggregatedResources`` stream.

Each response carries only the resources that are new or changed for the proxy, and the names
of the ones that are gone, instead of every resource of the type (state of the world re-sends
10,000 clusters for one more service). Per stream and type URL this tracks:

- the subscription: wildcard (CDS and LDS when the first request names nothing, or ``*``) and
  the explicitly subscribed names (RDS, SDS), changed by ``resource_names_subscribe`` /
  ``resource_names_unsubscribe``;
- what the proxy holds: name -> resource version, from ``initial_resource_versions`` on a
  reconnect and from every response sent; a resource is sent when its version differs;
- the latest nonce and the type version it carried: a request echoing it is an ACK, or a NACK
  with ``error_detail`` (recorded, never re-pushed: Envoy keeps its last good configuration);
  a request echoing an older nonce acknowledges nothing, but its subscription changes count.

Like the state-of-the-world stream, a change pushes secrets first (a replaced credential before
the cluster that uses it), then clusters, listeners, routes; and the first request of a wildcard
type is always answered, even with nothing, so that Envoy finishes initialising.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from exitgate.xds.cache import WILDCARD_TYPES, SnapshotCache, change_order

_log = logging.getLogger(__name__)


class Recorder(Protocol):
    """What the stream reports to (the ADS server's status bookkeeping)."""

    cache: SnapshotCache

    def _record_versions(self, node_id: str, type_url: str, *, sent: str = "", acked: str = "") -> None: ...

    def _record_ack(self, node_id: str, type_url: str, version: str) -> None: ...

    def _record_nack(self, node_id: str, type_url: str, version: str, running: str, error: str) -> None: ...


@dataclass
class _DeltaSubscription:
    wildcard: bool
    names: set[str] = field(default_factory=set)
    held: dict[str, str] = field(default_factory=dict)  # what the proxy has: name -> version
    nonce: str | None = None
    nonce_version: str = ""  # the type version the latest response brought the proxy to
    acked_version: str = ""


class DeltaStream:
    """Used only by the stream's handler thread; IO is the caller's (sans-IO)."""

    def __init__(self, server: Recorder, stream_id: int, node_id: str,
                 control_plane_id: str = "exitgate") -> None:
        self.server = server
        self.stream_id = stream_id
        self.node_id = node_id
        self._control_plane_id = control_plane_id
        self._subs: dict[str, _DeltaSubscription] = {}
        self._nonces = itertools.count(1)

    def handle_request(self, req: discovery_pb2.DeltaDiscoveryRequest) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        type_url = req.type_url
        if not type_url:
            _log.warning("node %s sent a delta request without type_url; ignored", self.node_id)
            return []
        subscribe, unsubscribe = set(req.resource_names_subscribe), set(req.resource_names_unsubscribe)
        sub = self._subs.get(type_url)
        first = sub is None
        if sub is None:
            wildcard = type_url in WILDCARD_TYPES and (not subscribe or "*" in subscribe)
            # A reconnecting Envoy says what it holds; only what differs is sent.
            sub = self._subs[type_url] = _DeltaSubscription(wildcard, held=dict(req.initial_resource_versions))
        elif req.response_nonce:
            if req.response_nonce == sub.nonce:
                if req.HasField("error_detail"):
                    self.server._record_nack(self.node_id, type_url, sub.nonce_version, sub.acked_version,
                                             req.error_detail.message)
                    # The proxy did not take them: what it holds is unknown; do not send them again
                    # unless they change (Envoy keeps its last good configuration, as with SotW).
                else:
                    sub.acked_version = sub.nonce_version
                    self.server._record_ack(self.node_id, type_url, sub.nonce_version)
            else:
                _log.debug("node %s: stale delta nonce %s for %s", self.node_id, req.response_nonce, type_url)
        if "*" in subscribe:
            sub.wildcard = True
        if "*" in unsubscribe:
            sub.wildcard = False
        sub.names |= subscribe - {"*"}
        sub.names -= unsubscribe
        for name in unsubscribe:
            sub.held.pop(name, None)
        response = self._respond(type_url, sub, always=first and sub.wildcard)
        return [response] if response is not None else []

    def handle_change(self) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        out = []
        for type_url in sorted(self._subs, key=change_order):
            response = self._respond(type_url, self._subs[type_url], always=False)
            if response is not None:
                out.append(response)
        return out

    def _respond(self, type_url: str, sub: _DeltaSubscription,
                 always: bool) -> discovery_pb2.DeltaDiscoveryResponse | None:
        version, versions, blobs = self.server.cache.get_delta(self.node_id, type_url)
        if not version:
            return None  # no snapshot for this node yet: answer once there is one
        in_scope: Callable[[str], bool] = (lambda n: True) if sub.wildcard else sub.names.__contains__
        changed = sorted(n for n, v in versions.items() if in_scope(n) and sub.held.get(n) != v)
        removed = sorted(n for n in sub.held if n not in versions and (sub.wildcard or n in sub.names))
        if not changed and not removed and not always:
            if version != sub.nonce_version:
                # Nothing the proxy subscribed to changed: it is at this version as far as it
                # goes (once the response it has not yet acknowledged, if any, is).
                outstanding = sub.nonce is not None and sub.acked_version != sub.nonce_version
                sub.nonce_version = version
                if outstanding:
                    self.server._record_versions(self.node_id, type_url, sent=version)
                else:
                    sub.acked_version = version
                    self.server._record_versions(self.node_id, type_url, sent=version, acked=version)
            return None
        nonce = f"{self.stream_id}-{next(self._nonces)}"
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version, type_url=type_url, nonce=nonce, removed_resources=removed,
            resources=[discovery_pb2.Resource(name=n, version=versions[n],
                                              resource=any_pb2.Any(type_url=type_url, value=blobs[n]))
                       for n in changed],
        )
        response.control_plane.identifier = self._control_plane_id
        for n in changed:
            sub.held[n] = versions[n]
        for n in removed:
            del sub.held[n]
        sub.nonce, sub.nonce_version = nonce, version
        self.server._record_versions(self.node_id, type_url, sent=version)
        return response
