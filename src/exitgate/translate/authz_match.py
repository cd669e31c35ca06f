"""AuthorizationPolicy attributes → RBAC matchers: one generator per attribute, as Istio's
``pilot/pkg/security/authz/model/generator.go`` and ``matcher/*.go`` write them, value by value.

Pure. A generator returns the matcher for one value, or raises :class:`Untranslatable` for a value
exitgate cannot express; translate/authz.py then fails closed (an ALLOW rule is dropped, a DENY
rule is applied without the part, i.e. it denies more).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from exitgate import ir
from exitgate.ir import StringMatch, StringMatchKind

SPIFFE_PREFIX = "spiffe://"
HOST_HEADER = ":authority"
METHOD_HEADER = ":method"
# Istio's default trust domain: a principal written with it means "the mesh's own trust domain".
CLUSTER_LOCAL = "cluster.local"


class Untranslatable(Exception):
    """A value exitgate cannot match exactly. ``wider``, when set, matches every request the value
    would (and more): a DENY or AUDIT rule may use it instead of dropping the whole condition."""

    def __init__(self, reason: str, wider: ir.RbacMatch | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wider = wider


Generator = Callable[[str], ir.RbacMatch]


@dataclass(frozen=True)
class Attribute:
    """An attribute a rule can test: where Envoy tests it, and how one value becomes a matcher."""

    key: str  # Istio's name: "source.principal", "hosts", ... (for messages)
    permission: bool  # True: a permission (the request); False: a principal (who asks)
    generate: Generator


# --- Istio's string forms: exact, prefix "abc*", suffix "*abc", presence "*" ---------------------

_GO_REGEX_META = frozenset("\\.+*?()|[]{}^$")


def quote_meta(value: str) -> str:
    """Go's ``regexp.QuoteMeta`` (Istio's escaping; Python's re.escape escapes more)."""
    return "".join("\\" + c if c in _GO_REGEX_META else c for c in value)


def regex(value: str) -> StringMatch:
    return StringMatch(StringMatchKind.REGEX, value)


def string_matcher(value: str, prefix: str = "", ignore_case: bool = False) -> StringMatch:
    """Istio's ``StringMatcherWithPrefix``: ``*`` is "present" (non-empty), a leading or trailing
    ``*`` a suffix or prefix match; ``prefix`` (``spiffe://``) is put in front of the value."""
    if value == "*":
        return regex(".+")
    if value.startswith("*"):
        if not prefix:
            return StringMatch(StringMatchKind.SUFFIX, value[1:], ignore_case)
        return regex(prefix + ".*" + quote_meta(value[1:]))
    if value.endswith("*"):
        return StringMatch(StringMatchKind.PREFIX, prefix + value[:-1], ignore_case)
    return StringMatch(StringMatchKind.EXACT, prefix + value, ignore_case)


def header_matcher(name: str, value: str, ignore_case: bool = False) -> ir.HeaderMatch:
    """Istio's ``HeaderMatcher`` / ``HostMatcher``: ``*`` is a presence match, not a regex."""
    if value == "*":
        return ir.HeaderMatch(name, None)
    return ir.HeaderMatch(name, string_matcher(value, ignore_case=ignore_case))


# --- permissions ----------------------------------------------------------------------------------

def host(value: str, port_stripped: bool) -> ir.RbacMatch:
    """``hosts``: ``:authority``, case-insensitive, exactly as sent (Istio matches the port too:
    ``example.com`` does not match ``example.com:8080``; Istio's advice is ``example.com:*``).

    exitgate's gateway listeners strip the port before any filter runs (``strip_any_host_port``),
    so RBAC sees the host alone: ``h:*`` (any port) becomes ``h``; a named port cannot be checked."""
    if not port_stripped:
        return header_matcher(HOST_HEADER, value, ignore_case=True)
    name, port = _split_port(value)
    if port is None:
        return header_matcher(HOST_HEADER, value, ignore_case=True)
    if port == "*" and name and "*" not in name:
        return header_matcher(HOST_HEADER, name, ignore_case=True)
    wider = header_matcher(HOST_HEADER, name, ignore_case=True) if name and "*" not in name else None
    raise Untranslatable(f"host {value!r} names a port, but the gateway removes the port from the authority "
                         f"before authorization, so it cannot be checked", wider)


def _split_port(value: str) -> tuple[str, str | None]:
    """("h", "8080") for "h:8080", ("h", "*") for "h:*", (value, None) when no port is written."""
    head, sep, tail = value.rpartition(":")
    if not sep or "]" in tail or (head.count(":") and not head.startswith("[")):
        return value, None  # no colon, or an IPv6 literal without a port
    if tail == "*" or tail.isdigit() or (tail.endswith("*") and tail[:-1].isdigit()):
        return head, tail
    return value, None


def method(value: str) -> ir.RbacMatch:
    return header_matcher(METHOD_HEADER, value)


def path(value: str) -> ir.RbacMatch:
    """``paths``: Istio's string forms on the path without the query, or a path template
    (``{*}`` one segment, ``{**}`` any) as Envoy's uri_template extension."""
    if "{*}" in value or "{**}" in value:
        return ir.PathTemplate(value.replace("{**}", "**").replace("{*}", "*"))
    return ir.PathMatch(string_matcher(value))


def port(value: str) -> ir.RbacMatch:
    if not value.isdigit() or int(value) > 65535:
        raise Untranslatable(f"port {value!r} is not a number 0-65535")
    return ir.DestinationPort(int(value))


def cidr(value: str) -> str:
    """Istio's ``AddrStrToCidrRange``: an address is a /32 (or /128); the address is kept as
    written (Envoy masks it)."""
    try:
        if "/" in value:
            address, _, length = value.partition("/")
            net = ipaddress.ip_network(value, strict=False)
            ipaddress.ip_address(address)
            return f"{address}/{int(length)}" if 0 <= int(length) <= net.max_prefixlen else _bad(value)
        ip = ipaddress.ip_address(value)
    except ValueError:
        return _bad(value)
    return f"{value}/{ip.max_prefixlen}"


def _bad(value: str) -> NoReturn:
    raise Untranslatable(f"{value!r} is not an IP address or CIDR range")


def destination_ip(value: str) -> ir.RbacMatch:
    return ir.DestinationIp(cidr(value))


def sni(value: str) -> ir.RbacMatch:
    return ir.ServerName(string_matcher(value))


# --- principals -----------------------------------------------------------------------------------

def source_ip(value: str) -> ir.RbacMatch:
    return ir.DirectRemoteIp(cidr(value))


def remote_ip(value: str) -> ir.RbacMatch:
    return ir.RemoteIp(cidr(value))


def principal(value: str) -> ir.RbacMatch:
    """``principals`` / ``source.principal``: written without ``spiffe://``, which Istio adds; a
    suffix form becomes a regex so the prefix still anchors it."""
    return ir.PeerPrincipal(string_matcher(value, SPIFFE_PREFIX))


def namespace(value: str) -> ir.RbacMatch:
    """``namespaces``: Istio's regex on the SPIFFE ID, ``*`` anywhere in the value being ``.*``."""
    pattern = ".*".join(quote_meta(part) for part in value.split("*"))
    return ir.PeerPrincipal(regex(f".*/ns/{pattern}/.*"))


def service_account(policy_namespace: str) -> Generator:
    """``serviceAccounts``: ``name`` (in the policy's namespace) or ``namespace/name``."""
    def generate(value: str) -> ir.RbacMatch:
        ns, sep, sa = value.partition("/")
        if not sep:
            ns, sa = policy_namespace, value
        return ir.PeerPrincipal(regex(f"spiffe://.+/ns/{quote_meta(ns)}/(.+/|)sa/{quote_meta(sa)}(/.+)?"))
    return generate


def request_header(key: str) -> Generator:
    name = key[len("request.headers"):]
    def generate(value: str) -> ir.RbacMatch:
        if not (name.startswith("[") and name.endswith("]") and len(name) > 2):
            raise Untranslatable(f"bad key {key!r}: write it as request.headers[name]")
        return header_matcher(name[1:-1], value)
    return generate


def http_only(key: str) -> Generator:
    """An HTTP attribute on the RBAC network filter (Istio's ``forTCP``: ``"%q is HTTP only"``):
    a TLS passthrough connection has no method, path, host header or JWT to test."""
    hint = "; on TLS, the server name is when connection.sni" if key == "hosts" else ""
    def generate(value: str) -> ir.RbacMatch:
        raise Untranslatable(f"{key!r} is HTTP only and cannot be checked on a TLS passthrough connection{hint}")
    return generate


def unsupported(what: str) -> Generator:
    def generate(value: str) -> ir.RbacMatch:
        raise Untranslatable(f"{what} is not supported by exitgate yet")
    return generate


def migrate_trust_domain(value: str, trust_domain: str) -> str:
    """Istio's ``ReplaceTrustDomainAliases`` with the mesh's trust domain and no aliases: a
    principal in ``cluster.local`` (or a trust-domain pattern matching the mesh's) is rewritten to
    the mesh's trust domain; ``*/ns/..`` and other trust domains are kept."""
    parts = value.split("/")
    if len(parts) != 5 or parts[0] == "*":
        return value
    td = parts[0]
    if not (_istio_string_match(td, trust_domain) or td == CLUSTER_LOCAL):
        return value
    if td.startswith("*") and trust_domain.endswith(td[1:]):
        return value
    return "/".join([trust_domain, *parts[1:]])


def _istio_string_match(a: str, pattern: str) -> bool:
    """Istio's trustdomain ``stringMatch`` against one entry: exact, ``*``, or a prefix/suffix
    pattern on either side."""
    def prefix(x: str, p: str) -> bool:
        return p.endswith("*") and x.startswith(p[:-1])

    def suffix(x: str, p: str) -> bool:
        return p.startswith("*") and x.endswith(p[1:])

    return (a == pattern or pattern == "*" or prefix(a, pattern) or prefix(pattern, a)
            or suffix(a, pattern) or suffix(pattern, a))


def when_attribute(key: str, policy_namespace: str, tcp: bool = False) -> Attribute:
    """The attribute of a ``when`` condition's key (Istio's ``model.New`` switch). ``tcp``: for
    the RBAC network filter, where request headers and ``request.auth.*`` are HTTP only."""
    if tcp and key.startswith(("request.headers", "request.auth.")):
        return Attribute(key, False, http_only(key))
    if key == "destination.ip":
        return Attribute(key, True, destination_ip)
    if key == "destination.port":
        return Attribute(key, True, port)
    if key == "connection.sni":
        return Attribute(key, True, sni)
    if key == "source.ip":
        return Attribute(key, False, source_ip)
    if key == "remote.ip":
        return Attribute(key, False, remote_ip)
    if key == "source.namespace":
        return Attribute(key, False, namespace)
    if key == "source.serviceAccount":
        return Attribute(key, False, service_account(policy_namespace))
    if key == "source.principal":
        return Attribute(key, False, principal)
    if key.startswith("request.headers"):
        return Attribute(key, False, request_header(key))
    if key.startswith("experimental."):
        return Attribute(key, True, unsupported(f"when key {key}"))
    if key.startswith("request.auth."):
        return Attribute(key, False, unsupported(f"when key {key} (needs RequestAuthentication)"))
    return Attribute(key, False, unsupported(f"when key {key}"))
