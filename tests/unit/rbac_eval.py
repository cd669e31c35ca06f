"""A small evaluator of Envoy RBAC HTTP filter configurations, for behaviour tests (Istio's
simulation-test idea, ``pilot/pkg/simulation``): describe a request, run it through the
generated filters as Envoy would, and see whether it is allowed and which policy decided.

It reads the Envoy JSON shape envoy/filters.py emits (snake_case field names), and models what
Envoy does (``source/extensions/filters/common/rbac``): an ALLOW filter passes a request only if
one of its policies matches, a DENY filter refuses it if one matches, LOG never refuses; a
policy matches when one permission and one principal do; policies are tried in name order (a
``std::map``); a filter without ``rules`` enforces nothing; shadow rules are evaluated and only
reported. A refusal is a 403 whose %RESPONSE_CODE_DETAILS% is
``rbac_access_denied_matched_policy[NAME]`` (``[none]`` when no ALLOW policy matched).

The RBAC network filters of a TLS passthrough chain (``envoy.filters.network.rbac``) are read the
same way: describe the connection with :func:`connection` (no HTTP request, no peer
certificate); a refusal closes it, with the same text in %CONNECTION_TERMINATION_DETAILS%.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Envoy's uri_template characters (source/extensions/path/uri_template_lib/uri_template_internal.cc).
_LITERAL = "a-zA-Z0-9\\-._~%!$&'()+,;:@="
_PATH_GLOB = f"[{_LITERAL}]+"  # "*": one segment
_TEXT_GLOB = f"[{_LITERAL}/]*"  # "**": any number of segments

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Request:
    host: str = "api.example.com"
    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    principal: str | None = "spiffe://cluster.local/ns/default/sa/sleep"  # peer URI SAN; None: no client cert
    source_ip: str = "10.0.0.1"  # the connection's peer (direct_remote_ip)
    remote_ip: str | None = None  # the original client (X-Forwarded-For); default: source_ip
    destination_ip: str = "127.0.0.1"
    destination_port: int = 8080
    sni: str = ""
    # The listener's strip_any_host_port: the authority's port is gone before filters run.
    strip_port: bool = True

    def header(self, name: str) -> str | None:
        name = name.lower()
        if name in (":authority", "host"):
            host = self.host
            if self.strip_port:
                head, sep, tail = host.rpartition(":")
                if sep and tail.isdigit() and (not head.count(":") or head.endswith("]")):
                    host = head
            return host
        if name == ":method":
            return self.method
        if name == ":path":
            return self.path
        for k, v in self.headers.items():
            if k.lower() == name:
                return v
        return None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    details: str | None = None  # %RESPONSE_CODE_DETAILS% of a refusal
    logged: tuple[str, ...] = ()  # AUDIT (LOG) policies that matched
    shadow: tuple[tuple[str, str, bool], ...] = ()  # (stat prefix, policy or "none", shadow result allowed)

    @property
    def policy(self) -> str | None:
        """The policy a refusal names (``none`` for an ALLOW filter no policy matched)."""
        if self.details is None:
            return None
        return self.details.removeprefix("rbac_access_denied_matched_policy[").removesuffix("]")


def connection(sni: str = "edition.cnn.com", *, source_ip: str = "127.0.0.1", remote_ip: str | None = None,
               destination_ip: str = "127.0.0.1", destination_port: int = 8443) -> Request:
    """A TLS passthrough connection as the RBAC network filter sees it: the client's own TLS (no
    peer certificate, so ``authenticated`` never matches), its SNI and addresses, no headers."""
    return Request(host="", method="", path="", principal=None, source_ip=source_ip, remote_ip=remote_ip,
                   destination_ip=destination_ip, destination_port=destination_port, sni=sni)


def evaluate(http_filters: Sequence[Json], request: Request) -> Verdict:
    logged: list[str] = []
    shadow: list[tuple[str, str, bool]] = []
    for f in http_filters:
        if f["name"] not in ("envoy.filters.http.rbac", "envoy.filters.network.rbac"):
            continue
        config = f["typed_config"]
        if "shadow_rules" in config:
            ok, name = _engine(config["shadow_rules"], request)
            shadow.append((config.get("shadow_rules_stat_prefix", ""), name or "none", ok))
        if "rules" not in config:
            continue
        rules = config["rules"]
        ok, name = _engine(rules, request)
        if rules.get("action", "ALLOW") == "LOG":
            if name:
                logged.append(name)
            continue
        if not ok:
            return Verdict(False, f"rbac_access_denied_matched_policy[{name or 'none'}]", tuple(logged), tuple(shadow))
    return Verdict(True, None, tuple(logged), tuple(shadow))


def _engine(rules: Json, request: Request) -> tuple[bool, str | None]:
    """(allowed, the first matching policy's name) for one RBAC config."""
    action = rules.get("action", "ALLOW")
    matched = next((name for name, p in sorted(rules.get("policies", {}).items()) if _policy(p, request)), None)
    if action == "ALLOW":
        return matched is not None, matched
    if action == "DENY":
        return matched is None, matched
    return True, matched  # LOG


def _policy(policy: Json, r: Request) -> bool:
    return any(permission(p, r) for p in policy["permissions"]) and any(principal(p, r) for p in policy["principals"])


def permission(p: Json, r: Request) -> bool:
    (kind, value), = p.items()
    if kind == "any":
        return bool(value)
    if kind == "and_rules":
        return all(permission(x, r) for x in value["rules"])
    if kind == "or_rules":
        return any(permission(x, r) for x in value["rules"])
    if kind == "not_rule":
        return not permission(value, r)
    if kind == "header":
        return header(value, r)
    if kind == "url_path":
        return string(value["path"], r.path.split("?", 1)[0].split("#", 1)[0])
    if kind == "uri_template":
        return uri_template(value["typed_config"]["path_template"], r.path)
    if kind == "destination_port":
        return bool(r.destination_port == value)
    if kind == "destination_ip":
        return _in(r.destination_ip, value)
    if kind == "requested_server_name":
        return string(value, r.sni)
    raise AssertionError(f"permission {kind} is not modelled")


def principal(p: Json, r: Request) -> bool:
    (kind, value), = p.items()
    if kind == "any":
        return bool(value)
    if kind == "and_ids":
        return all(principal(x, r) for x in value["ids"])
    if kind == "or_ids":
        return any(principal(x, r) for x in value["ids"])
    if kind == "not_id":
        return not principal(value, r)
    if kind == "header":
        return header(value, r)
    if kind == "authenticated":
        if r.principal is None:
            return False
        return "principal_name" not in value or string(value["principal_name"], r.principal)
    if kind == "direct_remote_ip":
        return _in(r.source_ip, value)
    if kind == "remote_ip":
        return _in(r.remote_ip or r.source_ip, value)
    raise AssertionError(f"principal {kind} is not modelled")


def header(m: Json, r: Request) -> bool:
    value = r.header(m["name"])
    if "present_match" in m:
        return bool((value is not None) == bool(m["present_match"]))
    return value is not None and string(m["string_match"], value)


def string(m: Json, value: str) -> bool:
    ignore = bool(m.get("ignore_case"))
    v = value.lower() if ignore else value

    def pattern(key: str) -> str:
        p = str(m[key])
        return p.lower() if ignore else p

    if "exact" in m:
        return v == pattern("exact")
    if "prefix" in m:
        return v.startswith(pattern("prefix"))
    if "suffix" in m:
        return v.endswith(pattern("suffix"))
    if "safe_regex" in m:
        return re.fullmatch(m["safe_regex"]["regex"], value) is not None
    raise AssertionError(f"string matcher {m} is not modelled")


def uri_template(template: str, path: str) -> bool:
    parts = []
    for segment in template.split("/"):
        parts.append(_PATH_GLOB if segment == "*" else _TEXT_GLOB if segment == "**" else re.escape(segment))
    return re.fullmatch("/".join(parts), path.split("?", 1)[0].split("#", 1)[0]) is not None


def _in(address: str, cidr: Json) -> bool:
    net = ipaddress.ip_network(f"{cidr['address_prefix']}/{cidr['prefix_len']}", strict=False)
    ip = ipaddress.ip_address(address)
    return ip.version == net.version and ip in net
