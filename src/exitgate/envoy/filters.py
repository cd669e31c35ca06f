"""The HTTP filter chain of a listener, as an ordered registry: one function per filter, each
returning Envoy's JSON shape (``{"name", "typed_config"}``) for the filters it adds.

Pure. The order is the chain's order and it matters:

1. RBAC, Istio's authorization filters (``envoy.filters.http.rbac``, one per action, in the
   order translate/authz.py gives: AUDIT, DENY, ALLOW). First, so that a refused request costs
   nothing downstream and nothing after it can be reached without passing it.
2. Fault injection (``envoy.filters.http.fault``, only on listeners whose routes inject faults;
   configured per route by ``typed_per_filter_config``). After authorization, as in Istio's
   listener builder (authz, ..., Fault, Cors, ..., router): a refused request is refused at
   once, never delayed or aborted with another status first.
3. The dynamic forward proxy (sidecars with ALLOW_ANY), after authorization and just before
   the router: it resolves the host of requests routed to ``PassthroughCluster``.
4. The router, last: it is the terminal filter, Envoy rejects a chain that does not end with it.

Envoy allows several filters with the same name in one chain; Istio names every RBAC filter
``envoy.filters.http.rbac``, and so does exitgate (users and tools look for that name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Imported for their side effect of registering the Any types these filters' configs name, so a
# json_format.ParseDict of the listener (or of one filter) resolves them.
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2  # noqa: F401
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2  # noqa: F401

from exitgate import ir
from exitgate.envoy import dfp

HTTP_RBAC = "envoy.filters.http.rbac"
HTTP_FAULT = "envoy.filters.http.fault"
T_FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
HTTP_ROUTER = "envoy.filters.http.router"
T_RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
NETWORK_RBAC = "envoy.filters.network.rbac"
T_NETWORK_RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
# Istio's stat prefix of the RBAC network filter (model.RBACTCPFilterStatPrefix): tcp.rbac.allowed, ...
TCP_RBAC_STAT_PREFIX = "tcp."
T_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
T_URI_TEMPLATE = "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"

# Istio's stat prefixes for dry-run policies (model.RBACShadowRules{Allow,Deny}StatPrefix).
SHADOW_ALLOW_PREFIX = "istio_dry_run_allow_"
SHADOW_DENY_PREFIX = "istio_dry_run_deny_"

Json = dict[str, Any]


def rbac_filters(lst: ir.HttpListener) -> list[Json]:
    return [{"name": HTTP_RBAC, "typed_config": rbac_config(f)} for f in lst.rbac]


def fault_filter(lst: ir.HttpListener) -> list[Json]:
    # Empty: it injects nothing by itself; each route's typed_per_filter_config says what.
    return [{"name": HTTP_FAULT, "typed_config": {"@type": T_FAULT}}] if lst.fault_injection else []


def dynamic_forward_proxy_filter(lst: ir.HttpListener) -> list[Json]:
    return [dfp.http_filter()] if lst.dynamic_forward_proxy else []


def router_filter(lst: ir.HttpListener) -> list[Json]:
    return [{"name": HTTP_ROUTER, "typed_config": {"@type": T_ROUTER}}]


# The registry, in chain order (see the module docstring for why this order).
HTTP_FILTERS: tuple[Callable[[ir.HttpListener], list[Json]], ...] = (
    rbac_filters, fault_filter, dynamic_forward_proxy_filter, router_filter)


def http_filters(lst: ir.HttpListener) -> list[Json]:
    return [f for build in HTTP_FILTERS for f in build(lst)]


# --- Fault injection ------------------------------------------------------------------------------

def fraction(percent: float) -> Json:
    # Istio's translatePercentToFractionalPercent: parts per million, so 0.1% is exact.
    return {"numerator": round(percent * 10000), "denominator": "MILLION"}


def fault_route_config(f: ir.FaultInjection) -> Json:
    """The ``HTTPFault`` a route puts in ``typed_per_filter_config`` under ``HTTP_FAULT``."""
    out: Json = {"@type": T_FAULT}
    if f.delay_s is not None:
        out["delay"] = {"fixed_delay": f"{f.delay_s:g}s", "percentage": fraction(f.delay_percent)}
    if f.abort_http_status is not None or f.abort_grpc_status is not None:
        abort: Json = ({"http_status": f.abort_http_status} if f.abort_http_status is not None
                       else {"grpc_status": f.abort_grpc_status})
        if f.abort_percent:
            abort["percentage"] = fraction(f.abort_percent)
        out["abort"] = abort
    return out


# --- RBAC -----------------------------------------------------------------------------------------

def rbac_config(f: ir.RbacFilter) -> Json:
    """``envoy.extensions.filters.http.rbac.v3.RBAC``. No ``rules`` at all means nothing is
    enforced (only shadow rules); ALLOW with empty ``policies`` refuses every request."""
    out: Json = {"@type": T_RBAC}
    if f.policies is not None:
        out["rules"] = _rules(f.action, f.policies)
    if f.shadow is not None:
        out["shadow_rules"] = _rules(f.action, f.shadow)
    # As Istio writes it: the prefix follows the shadow rules' action, ALLOW's when there are none.
    shadow_action = f.action if f.shadow is not None else ir.RbacAction.ALLOW
    if shadow_action is ir.RbacAction.ALLOW:
        out["shadow_rules_stat_prefix"] = SHADOW_ALLOW_PREFIX
    elif shadow_action is ir.RbacAction.DENY:
        out["shadow_rules_stat_prefix"] = SHADOW_DENY_PREFIX
    return out


def network_rbac_filters(rbac: tuple[ir.RbacFilter, ...]) -> list[Json]:
    """The RBAC network filters of a TLS passthrough chain (Istio's ``buildTCP``), one per action,
    in the given order; they go before tcp_proxy. A denied connection is closed, its
    %CONNECTION_TERMINATION_DETAILS% ``rbac_access_denied_matched_policy[NAME]``."""
    return [{"name": NETWORK_RBAC, "typed_config": network_rbac_config(f)} for f in rbac]


def network_rbac_config(f: ir.RbacFilter) -> Json:
    """``envoy.extensions.filters.network.rbac.v3.RBAC``: the HTTP filter's rules and shadow rules,
    with the ``stat_prefix`` the network filter requires (Istio's ``tcp.``)."""
    out = rbac_config(f)
    out["@type"] = T_NETWORK_RBAC
    out["stat_prefix"] = TCP_RBAC_STAT_PREFIX
    return out


def _rules(action: ir.RbacAction, policies: tuple[ir.RbacPolicy, ...]) -> Json:
    return {
        "action": action.value,
        "policies": {p.name: {"permissions": [permission(x) for x in p.permissions],
                              "principals": [principal(x) for x in p.principals]} for p in policies},
    }


def string_match(s: ir.StringMatch) -> Json:
    out: Json = {"safe_regex": {"regex": s.value}} if s.kind is ir.StringMatchKind.REGEX else {s.kind.value: s.value}
    if s.ignore_case:
        out["ignore_case"] = True
    return out


def _header(h: ir.HeaderMatch) -> Json:
    if h.match is None:
        return {"name": h.name, "present_match": True}
    return {"name": h.name, "string_match": string_match(h.match)}


def _cidr(value: str) -> Json:
    address, _, length = value.partition("/")
    return {"address_prefix": address, "prefix_len": int(length)}


def permission(x: ir.RbacMatch) -> Json:
    """An ``envoy.config.rbac.v3.Permission``."""
    if isinstance(x, ir.MatchAny):
        return {"any": True}
    if isinstance(x, ir.MatchAll):
        return {"and_rules": {"rules": [permission(i) for i in x.items]}}
    if isinstance(x, ir.MatchOneOf):
        return {"or_rules": {"rules": [permission(i) for i in x.items]}}
    if isinstance(x, ir.MatchNot):
        return {"not_rule": permission(x.item)}
    if isinstance(x, ir.HeaderMatch):
        return {"header": _header(x)}
    if isinstance(x, ir.PathMatch):
        return {"url_path": {"path": string_match(x.match)}}
    if isinstance(x, ir.PathTemplate):
        # Istio's name for the extension instance (model.permissionPathTemplate).
        return {"uri_template": {"name": "uri-template",
                                 "typed_config": {"@type": T_URI_TEMPLATE, "path_template": x.template}}}
    if isinstance(x, ir.DestinationPort):
        return {"destination_port": x.port}
    if isinstance(x, ir.DestinationIp):
        return {"destination_ip": _cidr(x.cidr)}
    if isinstance(x, ir.ServerName):
        return {"requested_server_name": string_match(x.match)}
    raise ValueError(f"{type(x).__name__} is not an RBAC permission")


def principal(x: ir.RbacMatch) -> Json:
    """An ``envoy.config.rbac.v3.Principal``."""
    if isinstance(x, ir.MatchAny):
        return {"any": True}
    if isinstance(x, ir.MatchAll):
        return {"and_ids": {"ids": [principal(i) for i in x.items]}}
    if isinstance(x, ir.MatchOneOf):
        return {"or_ids": {"ids": [principal(i) for i in x.items]}}
    if isinstance(x, ir.MatchNot):
        return {"not_id": principal(x.item)}
    if isinstance(x, ir.HeaderMatch):
        return {"header": _header(x)}
    if isinstance(x, ir.PeerPrincipal):
        return {"authenticated": {"principal_name": string_match(x.match)}}
    if isinstance(x, ir.DirectRemoteIp):
        return {"direct_remote_ip": _cidr(x.cidr)}
    if isinstance(x, ir.RemoteIp):
        return {"remote_ip": _cidr(x.cidr)}
    raise ValueError(f"{type(x).__name__} is not an RBAC principal")
