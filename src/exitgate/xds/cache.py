"""Snapshot cache: the xDS resources each proxy should run, with per-type versions.

The control plane computes a full set of resources for one node and hands it to
:meth:`SnapshotCache.set_snapshot`; ADS streams read it with :meth:`SnapshotCache.get` /
:meth:`SnapshotCache.get_packed` and learn about changes through :meth:`SnapshotCache.watch`
(callbacks) or :meth:`SnapshotCache.wait` (a condition variable).

Versions are per node and per type URL, and are derived from the content (a digest of the
deterministically serialized resources). So a version changes exactly when that type's content
changes, an unchanged type is never re-pushed, and versions stay the same across a control-plane
restart: the version an Envoy reports after reconnecting can be compared with the cache's.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TypeAlias

from google.protobuf import any_pb2
from google.protobuf.message import Message

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

# The order in which a proxy should receive changed types: clusters (and their endpoints) before
# the listeners that route to them, listeners before the route configurations they name
# (Envoy's "make before break" guidance for ADS). Secrets last: Envoy only asks for them once a
# cluster or listener names them (a change to a secret Envoy already asked for goes first, see
# xds/server.py: the credential before the cluster that uses it).
TYPE_ORDER: tuple[str, ...] = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE)

def change_order(type_url: str) -> tuple[int, int, str]:
    """The order a change pushes its types in: secrets Envoy already asked for first (a
    replaced client credential must be in place before the cluster that uses it is replaced,
    or connections opened in between would carry the old certificate), then TYPE_ORDER."""
    order = TYPE_ORDER.index(type_url) if type_url in TYPE_ORDER else len(TYPE_ORDER)
    return (0 if type_url == SECRET_TYPE else 1, order, type_url)


# LDS and CDS are wildcard subscriptions in State of the World: an empty name list means "all",
# and a resource missing from a response is deleted. The other types are always named.
WILDCARD_TYPES: frozenset[str] = frozenset({CLUSTER_TYPE, LISTENER_TYPE})

SHORT_NAMES: Mapping[str, str] = MappingProxyType(
    {
        CLUSTER_TYPE: "CDS",
        ENDPOINT_TYPE: "EDS",
        LISTENER_TYPE: "LDS",
        ROUTE_TYPE: "RDS",
        SECRET_TYPE: "SDS",
    }
)

# Length of the hex digest used as a version: 64 bits is plenty to tell snapshots apart and
# short enough to read in a status table.
_VERSION_HEX_CHARS = 16

# Resource kinds name themselves in one of these fields; a key that disagrees with it would make
# Envoy see a different name than the one it subscribed to.
_NAME_FIELDS = ("name", "cluster_name")


def short_type_name(type_url: str) -> str:
    """``CDS``/``LDS``/... for the five standard types, the message name for any other."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


@dataclass(frozen=True)
class _TypeEntry:
    version: str
    # Only the serialized form is kept (a second copy of every message per proxy was ~100 MiB
    # at 10,000 services); ``get`` parses copies from it.
    message_class: type[Message] | None
    blobs: Mapping[str, bytes]
    # Per resource, for incremental xDS: a digest of its serialized bytes.
    resource_versions: Mapping[str, str]


def _blob_version(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:_VERSION_HEX_CHARS]


def _type_version(versions: Mapping[str, str]) -> str:
    """A digest of every resource's name and version (each name length-prefixed, each version
    of one length: two different tables never give the same text); the per-resource digests
    are taken once per resource, not once per push."""
    parts = [f"{len(name)}:{name}\0{versions[name]}" for name in sorted(versions)]
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:_VERSION_HEX_CHARS]


@dataclass(frozen=True)
class Packed:
    """A resource already serialized (deterministically), as the cache keeps it: the proto memo
    holds these between pushes instead of message objects (five times their size in memory:
    ~140 MiB for two proxies at 10,000 services), and the cache takes the bytes as they are."""

    message_class: type[Message]
    name: str
    blob: bytes

    @cached_property
    def version(self) -> str:
        """The digest of the bytes, once: the memo hands the same object to push after push."""
        return _blob_version(self.blob)

    @classmethod
    def of(cls, message: Message, name_field: str = "name") -> Packed:
        return cls(type(message), getattr(message, name_field), message.SerializeToString(deterministic=True))

    def message(self) -> Message:
        """A parsed copy (for tests and tools that read fields)."""
        out = self.message_class()
        out.ParseFromString(self.blob)
        return out


Resource: TypeAlias = "Message | Packed"


def _check_resource(type_url: str, name: str, message: Resource, checked: set[type[Message]] | None = None) -> None:
    """``checked``: the Packed classes already found to be of ``type_url`` (one check per class,
    not one per resource: a proxy has thousands of one type)."""
    expected = type_url.rsplit("/", 1)[-1]
    if isinstance(message, Packed):
        cls = message.message_class
        if checked is None or cls not in checked:
            if cls.DESCRIPTOR.full_name != expected:
                raise ValueError(f"resource {name!r} is a {cls.DESCRIPTOR.full_name}, not a {type_url}")
            if checked is not None:
                checked.add(cls)
        if message.name != name:
            raise ValueError(f"resource keyed {name!r} names itself {message.name!r}")
        return
    if message.DESCRIPTOR.full_name != expected:
        raise ValueError(
            f"resource {name!r} is a {message.DESCRIPTOR.full_name}, not a {expected} ({type_url})"
        )
    for field in _NAME_FIELDS:
        if field in message.DESCRIPTOR.fields_by_name:
            own = getattr(message, field)
            if own != name:
                raise ValueError(f"resource keyed {name!r} names itself {own!r} in field {field!r}")
            break


def _freeze(type_url: str, resources: Mapping[str, Resource]) -> _TypeEntry:
    blobs: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    message_class: type[Message] | None = None
    checked: set[type[Message]] = set()
    for name, message in resources.items():
        if isinstance(message, Packed):
            if message.message_class not in checked or message.name != name:
                _check_resource(type_url, name, message, checked)
            blobs[name], versions[name], message_class = message.blob, message.version, message.message_class
            continue
        _check_resource(type_url, name, message)
        # The bytes are the cache's own: the caller may go on mutating its message objects.
        blobs[name] = blob = message.SerializeToString(deterministic=True)
        versions[name] = _blob_version(blob)
        message_class = type(message)
    return _TypeEntry(_type_version(versions), message_class, MappingProxyType(blobs), MappingProxyType(versions))


class SnapshotCache:
    """Thread-safe store of per-node xDS resources.

    A snapshot replaces everything known for a node. The five standard types are always present
    once a node has a snapshot (a type left out means "none of that type"), because a wildcard
    CDS/LDS subscription needs an answer, even an empty one, for Envoy to finish initialising.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._nodes: dict[str, dict[str, _TypeEntry]] = {}
        # Bumped on every change of a node's content (or removal); `wait` compares against it.
        self._generations: dict[str, int] = {}
        self._watchers: dict[str, dict[int, Callable[[], None]]] = {}
        self._next_watch_id = 0

    def set_snapshot(self, node_id: str, resources: Mapping[str, Mapping[str, Resource]]) -> str:
        """Replace the node's resources; return a summary of its versions, ``CDS=... LDS=...``.

        Raises ValueError if a resource's message type does not match its type URL or its own
        name field disagrees with its key; nothing is stored then.
        """
        if not node_id:
            raise ValueError("node_id must not be empty")
        # Serialize and hash outside the lock: it is the expensive part.
        frozen = {type_url: _freeze(type_url, by_name) for type_url, by_name in resources.items()}
        for type_url in TYPE_ORDER:
            frozen.setdefault(type_url, _freeze(type_url, {}))
        with self._cond:
            old = self._nodes.get(node_id, {})
            changed = old.keys() != frozen.keys() or any(
                old[t].version != entry.version for t, entry in frozen.items()
            )
            # Keep the old entries when their content is the same, so identity-based consumers
            # see no difference either.
            self._nodes[node_id] = {
                t: old[t] if t in old and old[t].version == entry.version else entry
                for t, entry in frozen.items()
            }
            if changed:
                self._generations[node_id] = self._generations.get(node_id, 0) + 1
                self._cond.notify_all()
            watchers = list(self._watchers.get(node_id, {}).values()) if changed else []
            summary = self._summary_locked(node_id)
        # Callbacks run outside the lock so that they may call back into the cache.
        for callback in watchers:
            callback()
        return summary

    def replaces(self, node_id: str, type_url: str, resources: Mapping[str, Resource]) -> bool:
        """Whether ``resources`` would replace or remove any resource of the type the node now
        has (an added one replaces nothing). Meant for the few listeners: serializes what is
        not packed."""
        with self._cond:
            entry = self._nodes.get(node_id, {}).get(type_url)
        if entry is None:
            return False
        for name, blob in entry.blobs.items():
            new = resources.get(name)
            if new is None:
                return True
            new_blob = new.blob if isinstance(new, Packed) else new.SerializeToString(deterministic=True)
            if new_blob != blob:
                return True
        return False

    def remove(self, node_id: str) -> None:
        """Forget the node's resources. Its streams stay open but get nothing more to send."""
        with self._cond:
            if self._nodes.pop(node_id, None) is None:
                return
            self._generations[node_id] = self._generations.get(node_id, 0) + 1
            self._cond.notify_all()
            watchers = list(self._watchers.get(node_id, {}).values())
        for callback in watchers:
            callback()

    def get(self, node_id: str, type_url: str) -> tuple[str, dict[str, Message]]:
        """Return (version, resources by name); ``("", {})`` if the node has no snapshot.

        The messages are parsed from the stored bytes: copies, the caller's to keep.
        """
        with self._cond:
            entry = self._nodes.get(node_id, {}).get(type_url)
        if entry is None:
            return "", {}
        cls = entry.message_class
        return entry.version, {n: cls.FromString(b) for n, b in entry.blobs.items()} if cls else {}

    def names(self, node_id: str, type_url: str) -> list[str]:
        """The names of the node's resources of the type, without parsing them."""
        with self._cond:
            entry = self._nodes.get(node_id, {}).get(type_url)
        return sorted(entry.blobs) if entry is not None else []

    def get_packed(
        self, node_id: str, type_url: str, names: Collection[str] | None = None
    ) -> tuple[str, list[any_pb2.Any]]:
        """Return (version, resources packed as ``Any``), sorted by name, for a response.

        ``names=None`` means all resources of the type; otherwise only the named ones that exist.
        Uses the bytes serialized at ``set_snapshot`` time, so nothing is serialized again.
        """
        with self._cond:
            entry = self._nodes.get(node_id, {}).get(type_url)
        if entry is None:
            return "", []
        selected = sorted(entry.blobs if names is None else (n for n in names if n in entry.blobs))
        return entry.version, [any_pb2.Any(type_url=type_url, value=entry.blobs[n]) for n in selected]

    def get_delta(self, node_id: str, type_url: str) -> tuple[str, Mapping[str, str], Mapping[str, bytes]]:
        """(type version, version of each resource, serialized bytes of each resource) for an
        incremental response; ``("", {}, {})`` if the node has no snapshot."""
        with self._cond:
            entry = self._nodes.get(node_id, {}).get(type_url)
        if entry is None:
            return "", {}, {}
        return entry.version, entry.resource_versions, entry.blobs

    def version(self, node_id: str, type_url: str) -> str:
        """The node's version for the type, ``""`` if it has no snapshot."""
        with self._cond:
            entry = self._nodes.get(node_id, {}).get(type_url)
        return "" if entry is None else entry.version

    def versions(self, node_id: str) -> dict[str, str]:
        """All the node's versions by type URL; empty if it has no snapshot."""
        with self._cond:
            return {t: e.version for t, e in self._nodes.get(node_id, {}).items()}

    def nodes(self) -> list[str]:
        with self._cond:
            return sorted(self._nodes)

    def generation(self, node_id: str) -> int:
        """A counter that grows with every change of the node's content; 0 before the first."""
        with self._cond:
            return self._generations.get(node_id, 0)

    def wait(self, node_id: str, generation: int, timeout: float | None = None) -> int:
        """Block until the node's generation differs from ``generation`` or the timeout passes;
        return the current generation (equal to the argument on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self._generations.get(node_id, 0) != generation, timeout)
            return self._generations.get(node_id, 0)

    def watch(self, node_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from the writer's thread, without arguments) after each change of
        the node's content; return a function that cancels the watch. Callbacks must be quick:
        an ADS stream's just enqueues a wake-up."""
        with self._cond:
            watch_id = self._next_watch_id
            self._next_watch_id += 1
            self._watchers.setdefault(node_id, {})[watch_id] = callback

        def cancel() -> None:
            with self._cond:
                by_id = self._watchers.get(node_id)
                if by_id is not None:
                    by_id.pop(watch_id, None)
                    if not by_id:
                        del self._watchers[node_id]

        return cancel

    def _summary_locked(self, node_id: str) -> str:
        entries = self._nodes.get(node_id, {})
        ordered = [t for t in TYPE_ORDER if t in entries] + sorted(set(entries) - set(TYPE_ORDER))
        return " ".join(f"{short_type_name(t)}={entries[t].version}" for t in ordered)
