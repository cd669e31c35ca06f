"""IR route tables -> Envoy's RouteConfiguration: virtual hosts, routes and their matches,
retries, rewrites, redirects, header operations and the CONNECT routes of the forward proxy.

Each virtual host is built on its own (``virtual_host``), so that a memo can keep it across
pushes and a route table with one host more converts only that host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Imported for their side effect of registering the Any types used in retry policies.
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2  # noqa: F401

from exitgate import ir
from exitgate.envoy import telemetry
from exitgate.envoy import filters
from exitgate.xds.cache import Packed
from exitgate.envoy.protoparse import Reused
from exitgate.envoy.resources import parse_json, duration


def _route(r: ir.Route) -> dict[str, Any]:
    """One Envoy route, as Istio's route.TranslateRoute writes it."""
    out: dict[str, Any] = {"name": r.name, "match": _route_match(r)}
    if r.virtual_service:
        # Istio's: what `proxy-config route` shows as the route's VIRTUAL SERVICE.
        ns, _, name = r.virtual_service.partition("/")
        out["metadata"] = {"filter_metadata": {"istio": {
            "config": f"/apis/networking.istio.io/v1/namespaces/{ns}/virtual-service/{name}"}}}
    if r.redirect is not None or r.direct_status is not None or not r.clusters:
        # A route that answers itself reaches no cluster: Istio's metrics name its destination
        # "unknown" (the stats loggers read these where a cluster's metadata would be).
        out.setdefault("metadata", {"filter_metadata": {}})["filter_metadata"].update(telemetry.route_metadata(r.name))
    if r.redirect is not None:
        out["redirect"] = _redirect(r.redirect)
    elif r.direct_status is not None or not r.clusters:
        resp: dict[str, Any] = {"status": r.direct_status or 503}
        if r.direct_body:
            resp["body"] = {"inline_string": r.direct_body}
        elif r.direct_body_base64:
            resp["body"] = {"inline_bytes": r.direct_body_base64}
        out["direct_response"] = resp
    else:
        action: dict[str, Any] = ({"cluster": r.clusters[0].cluster} if len(r.clusters) == 1 else
                                  {"weighted_clusters": {"clusters": [
                                      {"name": w.cluster, "weight": w.weight} for w in r.clusters if w.weight > 0]}})
        action["timeout"] = duration(r.timeout_s)
        if r.retry is not None:
            action["retry_policy"] = Reused(_retry_policy(r.retry))  # Istio's default, on nearly every route
        if r.rewrite is not None:
            action.update(_rewrite(r.rewrite))
        if r.mirrors:
            action["request_mirror_policies"] = [
                {"cluster": m.cluster, "runtime_fraction": {"default_value": filters.fraction(m.percent)}}
                for m in r.mirrors]
        out["route"] = action
    if r.header_ops is not None:
        out.update(_header_ops(r.header_ops))
    if r.fault is not None:
        out["typed_per_filter_config"] = {filters.HTTP_FAULT: filters.fault_route_config(r.fault)}
    if r.stat_prefix:
        out["stat_prefix"] = r.stat_prefix
    return out


# Istio's retry host predicate and retry priority (xdsfilters.RetryPreviousHosts, retry.go).
T_PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
T_PREVIOUS_PRIORITIES = ("type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3."
                         "PreviousPrioritiesConfig")
REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                  308: "PERMANENT_REDIRECT"}


def _route_match(r: ir.Route) -> dict[str, Any]:
    if r.path_regex is not None:
        match: dict[str, Any] = {"safe_regex": {"regex": r.path_regex}}
    else:
        match = {"path": r.prefix} if r.exact else {"prefix": r.prefix}
    if r.ignore_case:
        match["case_sensitive"] = False
    if r.headers:
        match["headers"] = [_header_matcher(h) for h in r.headers]
    if r.query_params:
        match["query_parameters"] = [
            {"name": q.name, "present_match": True} if q.match is None
            else {"name": q.name, "string_match": filters.string_match(q.match)} for q in r.query_params]
    return match


def _header_matcher(h: ir.RouteHeaderMatch) -> dict[str, Any]:
    out: dict[str, Any] = ({"name": h.name, "present_match": True} if h.match is None
                           else {"name": h.name, "string_match": filters.string_match(h.match)})
    if h.invert:
        out["invert_match"] = True
    if h.treat_missing_as_empty:
        out["treat_missing_header_as_empty"] = True
    return out


def _retry_policy(p: ir.RetryPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {"retry_on": p.retry_on, "num_retries": p.attempts,
                           "host_selection_retry_max_attempts": str(p.host_selection_retry_max_attempts)}
    if p.retriable_status_codes:
        out["retriable_status_codes"] = list(p.retriable_status_codes)
    if p.per_try_timeout_s is not None:
        out["per_try_timeout"] = duration(p.per_try_timeout_s)
    if p.previous_hosts:
        out["retry_host_predicate"] = [{"name": "envoy.retry_host_predicates.previous_hosts",
                                        "typed_config": {"@type": T_PREVIOUS_HOSTS}}]
    if p.remote_localities:
        out["retry_priority"] = {"name": "envoy.retry_priorities.previous_priorities",
                                 "typed_config": {"@type": T_PREVIOUS_PRIORITIES, "update_frequency": 2}}
    if p.backoff_s is not None:
        out["retry_back_off"] = {"base_interval": duration(p.backoff_s)}
    return out


def _rewrite(w: ir.Rewrite) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if w.regex is not None:
        out["regex_rewrite"] = {"pattern": {"regex": w.regex}, "substitution": w.substitution or ""}
    elif w.prefix is not None:
        out["prefix_rewrite"] = w.prefix
    if w.authority is not None:
        out["host_rewrite_literal"] = w.authority
    return out


def _redirect(d: ir.Redirect) -> dict[str, Any]:
    out: dict[str, Any] = {"response_code": REDIRECT_CODES[d.code]}
    if d.path is not None:
        out["path_redirect"] = d.path
    if d.host is not None:
        out["host_redirect"] = d.host
    if d.port is not None:
        out["port_redirect"] = d.port
    if d.scheme is not None:
        out["scheme_redirect"] = d.scheme
    return out


def _header_ops(ops: ir.HeaderOps) -> dict[str, Any]:
    def adds(values: tuple[ir.HeaderValue, ...]) -> list[dict[str, Any]]:
        # Istio: ``set`` overwrites (or adds), ``add`` appends (or adds).
        return [{"header": {"key": v.name, "value": v.value},
                 "append_action": "APPEND_IF_EXISTS_OR_ADD" if v.append else "OVERWRITE_IF_EXISTS_OR_ADD"}
                for v in values]
    out: dict[str, Any] = {}
    for key, value in (("request_headers_to_add", adds(ops.request_add)),
                       ("request_headers_to_remove", list(ops.request_remove)),
                       ("response_headers_to_add", adds(ops.response_add)),
                       ("response_headers_to_remove", list(ops.response_remove))):
        if value:
            out[key] = value
    return out


def _connect_route(v: ir.VirtualHost) -> list[dict[str, Any]]:
    """A CONNECT request to the virtual host's host:port: terminated here (``connect_config``),
    its payload proxied as TCP to the cluster; CONNECT requests have no path, so only a
    ``connect_matcher`` route takes them."""
    match: dict[str, Any] = {"connect_matcher": {}}
    if v.connect_status is not None:
        return [{"name": f"{v.name}.connect", "match": match, "direct_response": {"status": v.connect_status}}]
    if not v.connect_clusters:
        return []
    route: dict[str, Any] = {"timeout": "0s", "upgrade_configs": [{"upgrade_type": "CONNECT", "connect_config": {}}]}
    if len(v.connect_clusters) == 1:
        route["cluster"] = v.connect_clusters[0].cluster
    else:
        route["weighted_clusters"] = {"clusters": [{"name": w.cluster, "weight": w.weight}
                                                   for w in v.connect_clusters if w.weight > 0]}
    return [{"name": f"{v.name}.connect", "match": match, "route": route}]


def virtual_host(v: ir.VirtualHost) -> route_components_pb2.VirtualHost:
    data = {"name": v.name, "domains": list(v.domains), "routes": _connect_route(v) + [_route(r) for r in v.routes]}
    return parse_json(data, route_components_pb2.VirtualHost())


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# RouteConfiguration.virtual_hosts is field 2, length-delimited: its tag byte.
_VIRTUAL_HOSTS_TAG = bytes([(2 << 3) | 2])


def framed_virtual_host(v: ir.VirtualHost) -> bytes:
    """A virtual host as one record of its route table's bytes: the field's tag, the length,
    the virtual host serialized."""
    blob: bytes = virtual_host(v).SerializeToString(deterministic=True)
    return _VIRTUAL_HOSTS_TAG + _varint(len(blob)) + blob


def packed_route_config(rc: ir.RouteConfig, framed: Callable[[ir.VirtualHost], bytes]) -> Packed:
    """``route_config`` serialized, assembled from each virtual host's record (``framed``, a
    memo's ``framed_virtual_host``) without building the table's message: the same bytes as its
    deterministic serialization, since that writes fields in number order and a repeated field
    as one record per element — name (1), the virtual hosts (2), then validate_clusters (7)."""
    head = route_pb2.RouteConfiguration(name=rc.name).SerializeToString(deterministic=True)
    tail_message = route_pb2.RouteConfiguration()
    tail_message.validate_clusters.value = False
    tail = tail_message.SerializeToString(deterministic=True)
    return Packed(route_pb2.RouteConfiguration, rc.name, b"".join((head, *map(framed, rc.virtual_hosts), tail)))


def route_config(rc: ir.RouteConfig) -> route_pb2.RouteConfiguration:
    """The route table as a message (static bootstraps, tools): ``packed_route_config``'s, parsed."""
    packed = packed_route_config(rc, framed_virtual_host)
    out = route_pb2.RouteConfiguration()
    out.ParseFromString(packed.blob)
    return out
