"""One proxy's IR plus its resolved secrets -> the xDS resources by type URL (pure), and the same
resources rendered as a static Envoy bootstrap, which ``envoy --mode validate`` checks and the
golden tests store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.message import Message

from exitgate import ir, names
from exitgate.envoy import capture
from exitgate.envoy import resources as res
from exitgate.envoy import routes
from exitgate.xds.cache import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE, Packed, Resource


# The control plane's own secrets: rotating them must not churn clusters (SDS alone updates them,
# and connection lifetimes are bounded).
MESH_SECRETS = frozenset({names.WORKLOAD_CERT_SECRET, names.ROOT_CA_SECRET})


def credential_version(c: ir.Cluster, secrets: Mapping[str, ir.SecretData]) -> str | None:
    """A digest of the user-provided secrets a cluster's TLS uses (None if it uses none)."""
    if c.tls is None:
        return None
    digest = hashlib.sha256()
    used = False
    for name in (c.tls.client_cert_secret, c.tls.validation_secret):
        data = secrets.get(name) if name and name not in MESH_SECRETS else None
        if data is not None:
            for part in (data.cert_pem, data.key_pem, data.ca_pem, data.crl_pem):
                digest.update(hashlib.sha256(part or b"").digest())
            used = True
    return digest.hexdigest()[:16] if used else None


T = TypeVar("T")
R = TypeVar("R")


class ProtoMemo:
    """IR value -> the Envoy resource built from it, serialized (``Packed``, or a virtual host's
    bytes), carried from one push to the next: an unchanged cluster, listener or route table is
    not converted again (turning IR into protos was most of a push at 10,000 services), and what
    is kept is the bytes, not message objects five times their size. IR nodes are frozen
    dataclasses, so equal values hash alike; the memo keeps what the last two pushes used,
    nothing older.

    The same IR object again (the translation memo hands out the ones of the last push) is
    found by identity first: hashing a frozen dataclass walks all of it, every time."""

    def __init__(self) -> None:
        self._previous: dict[object, object] = {}
        self._current: dict[object, object] = {}
        # id (with the salt) -> (the object, kept alive so its id is not reused; what was built).
        self._previous_ids: dict[Hashable, tuple[object, object]] = {}
        self._current_ids: dict[Hashable, tuple[object, object]] = {}

    def get(self, item: T, build: Callable[[T], R], parts: Callable[[T], Iterable[object]] | None = None,
            salt: Hashable = None) -> R:
        """``parts``: the nodes inside ``item`` that ``build`` memoizes on their own. When
        ``item`` itself is found they are not visited, so they are carried to this push here;
        else one service more would find a route table changed and none of its virtual hosts.
        ``salt``: what else ``build`` reads (a cluster's, the labels the proxy's loggers hold)."""
        key = id(item) if salt is None else (id(item), salt)
        known = self._current_ids.get(key) or self._previous_ids.get(key)
        if known is not None and known[0] is item:
            hit: object | None = known[1]
        else:
            by_value = item if salt is None else (item, salt)
            try:
                hit = self._current.get(by_value)
                if hit is None:
                    hit = self._previous.get(by_value)
            except TypeError:  # a node holding something unhashable: build it every time
                return build(item)
            if hit is None:
                hit = build(item)
                parts = None
            self._current[by_value] = hit
        assert hit is not None
        if parts is not None:
            self._keep(parts(item))
        self._current_ids[key] = (item, hit)
        # One builder per IR type (a cluster's, a virtual host's...): what it built, it gets back.
        return cast(R, hit)

    def _keep(self, items: Iterable[object]) -> None:
        for part in items:
            key = id(part)
            if key not in self._current_ids:
                found = self._previous_ids.get(key)
                if found is not None and found[0] is part:
                    self._current_ids[key] = found
                    continue
            if part not in self._current:
                value = self._previous.get(part)
                if value is not None:
                    self._current[part] = value

    def next_push(self) -> None:
        self._previous, self._current = self._current, {}
        self._previous_ids, self._current_ids = self._current_ids, {}


def xds_resources(pc: ir.ProxyConfig, secrets: Mapping[str, ir.SecretData],
                  memo: ProtoMemo | None = None) -> dict[str, dict[str, Resource]]:
    """Secrets named by the IR but missing from ``secrets`` are left out: Envoy then keeps the
    listener or cluster that needs them warming, and no traffic flows without its TLS.

    Each cluster is stamped with the version of the user secrets it uses, so that a renewed
    client certificate or CA replaces the cluster and Envoy drains connections made with the
    old one (an SDS update alone leaves pooled connections as they are)."""
    # Most clusters use no user secret: they stay the same objects (no copy of each per push).
    clusters = [c if (v := credential_version(c, secrets)) == c.credential_version else replace(c, credential_version=v)
                for c in pc.clusters]
    m = memo or ProtoMemo()
    shared = tuple(k for k, _ in pc.shared_labels)

    def vhost(v: ir.VirtualHost) -> bytes:
        return m.get(v, routes.framed_virtual_host)

    return {
        LISTENER_TYPE: {**{x.name: m.get(x, lambda x: Packed.of(res.listener(x))) for x in pc.listeners},
                        **{x.name: m.get(x, lambda x: Packed.of(res.tls_passthrough_listener(x)))
                           for x in pc.tls_passthrough_listeners},
                        **{x.name: m.get(x, lambda x: Packed.of(capture.listener(x))) for x in pc.capture_listeners}},
        ROUTE_TYPE: {x.name: m.get(x, lambda rc: routes.packed_route_config(rc, vhost), lambda rc: rc.virtual_hosts)
                     for x in pc.route_configs},
        # Keyed with the labels left out too: a cluster is the same resource only if they are.
        CLUSTER_TYPE: {x.name: m.get(x, lambda c: Packed.of(res.cluster(c, shared)), salt=shared) for x in clusters},
        # Secrets stay messages: few, and never memoized (their keys are not kept for a next push).
        SECRET_TYPE: {n: res.secret(secrets[n]) for n in pc.secret_names if n in secrets},
    }


def _to_dict(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(m, preserving_proto_field_name=True)
    return out


def _inline_sds(node: Any) -> Any:
    """Static bootstraps name static secrets without an ``sds_config``."""
    if isinstance(node, dict):
        return {k: _inline_sds(v) for k, v in node.items() if k != "sds_config"}
    if isinstance(node, list):
        return [_inline_sds(v) for v in node]
    return node


def _inline_rds(listener: dict[str, Any], routes: dict[str, Any]) -> dict[str, Any]:
    """The listener's HTTP connection managers with their route configuration inline."""
    for chain in listener.get("filter_chains", []):
        for f in chain["filters"]:
            hcm = f["typed_config"]
            if "rds" in hcm:
                name = hcm.pop("rds")["route_config_name"]
                hcm["route_config"] = routes.get(name, {"name": name})
    return listener


def static_bootstrap(pc: ir.ProxyConfig, secrets: Mapping[str, ir.SecretData], admin_port: int = 0) -> dict[str, Any]:
    """The proxy's whole configuration as a static bootstrap: RDS replaced by inline route
    configurations and SDS by static secrets."""
    # Through _inline_sds also for its copy into plain dicts: MessageToDict renders a route's Any
    # (typed_per_filter_config, retry predicates) as an OrderedDict, which YAML cannot dump.
    tables = {r.name: _inline_sds(_to_dict(routes.route_config(r))) for r in pc.route_configs}
    listeners = [_inline_rds(_inline_sds(_to_dict(res.listener(x))), tables) for x in pc.listeners]
    listeners += [_inline_sds(_to_dict(res.tls_passthrough_listener(x))) for x in pc.tls_passthrough_listeners]
    listeners += [_inline_rds(_inline_sds(_to_dict(capture.listener(x))), tables) for x in pc.capture_listeners]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": [_inline_sds(_to_dict(res.cluster(replace(c, credential_version=credential_version(c, secrets)),
                                                          [k for k, _ in pc.shared_labels])))
                         for c in pc.clusters],
            "secrets": [_to_dict(res.secret(secrets[n])) for n in pc.secret_names if n in secrets],
        },
    }
