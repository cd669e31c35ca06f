"""Shared pieces of the ``networking.istio.io`` kinds: protocol names, port numbers, Istio's host
rules (ServiceEntry, destination, Gateway and Sidecar hosts, host matching, gateway names), the
workload selectors, and the destination (host, subset, port) that routes and Sidecars name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from exitgate.api.base import (
    Issue,
    Path,
    Spec,
    SubsetName,
    Where,
    checked,
    host_problem,
    is_dns_label,
    is_partial_wildcard,
    is_ip,
    selector_issues,
    warning,
)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


# Istio parses protocol names case-insensitively ("http" is HTTP).
Protocol = Annotated[
    Literal["HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "HTTP_PROXY", "MONGO", "TCP", "TLS", "MYSQL", "REDIS",
            "UDP"],
    BeforeValidator(_upper),
]
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
# Istio's protocol.IsHTTP() and IsTLS().
ISTIO_HTTP = HTTP_PROTOCOLS | {"HTTP_PROXY"}
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
# Protocols Istio carries as opaque TCP.
TCP_PROTOCOLS = frozenset({"TCP", "MONGO", "MYSQL", "REDIS"})

PORT_RANGE = "port numbers are 1-65535"


def _a(protocol: str) -> str:
    return "an" if protocol.startswith(("HTTP", "MYSQL")) else "a"


def _port_problem(n: int) -> str | None:
    return None if 1 <= n <= 65535 else f"port number {n} is out of range: {PORT_RANGE}"


# --- hosts -------------------------------------------------------------------------------------


def _service_entry_host(host: str) -> str | None:
    if host == "*":
        return "a ServiceEntry host cannot be '*' alone; name the hosts, like *.example.com or api.example.com"
    return host_problem(host)


def _destination_host(host: str) -> str | None:
    if host == "*":
        return "a destination host cannot be '*'; name the service, like api.example.com"
    return host_problem(host)


def _gateway_host_part(host: str, *, gateway: bool) -> str | None:
    """Istio's ``validateSidecarOrGatewayHostnamePart``: no short names, no partial wildcards
    (``ValidatePartialWildCard``), and, in a Gateway, an IP address is a host too."""
    if host != "*" and "." not in host:
        return (f"short name {host!r} is not allowed here: use the fully qualified name "
                f"(like reviews.default.svc.cluster.local), a wildcard like *.example.com, or '*'")
    problem = host_problem(host, partial=False)
    if problem and not (gateway and is_ip(host)):
        return problem
    return None


def gateway_host_problem(value: str) -> str | None:
    """A Gateway server host: ``host`` or ``namespace/host``, namespace '*', '.' or a name."""
    ns, slash, host = value.partition("/")
    if not slash:
        return _gateway_host_part(value, gateway=True)
    if not ns or not host:
        return f"{value!r}: the namespace and the host of 'namespace/host' must not be empty"
    if ns not in ("*", ".") and not is_dns_label(ns):
        return f"invalid namespace {ns!r} in {value!r}: use '*', '.' or a namespace name"
    return _gateway_host_part(host, gateway=True)


def sidecar_host_problem(value: str) -> str | None:
    """A Sidecar egress host: ``namespace/host`` with namespace '*', '.' or a name, each of them
    ``~``-prefixed to exclude it (``~/host``: the host in no namespace; ``~ns/*``: not ns)."""
    ns, slash, host = value.partition("/")
    if not slash:
        return (f"{value!r} must be of the form namespace/host: './{value}' (this namespace), '*/{value}' (any "
                f"namespace) or 'ns/{value}'")
    if not ns or not host:
        return f"{value!r}: the namespace and the host of 'namespace/host' must not be empty"
    bare = ns.removeprefix("~")
    if bare not in ("", "*", ".") and not is_dns_label(bare):
        return f"invalid namespace {ns!r} in {value!r}: use '*', '.', a namespace name, or one of them after '~'"
    return _gateway_host_part(host, gateway=False)


def host_matches(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: the two hosts overlap (wildcards included)."""
    aw, bw = a.startswith("*"), b.startswith("*")
    if aw and bw:
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if aw:
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every host ``a`` matches is matched by ``b``."""
    if b.startswith("*"):
        return a.endswith(b[1:]) if not a.startswith("*") else a[1:].endswith(b[1:])
    return a == b


def gateway_name_issues(names: Sequence[str] | None, path: Path) -> list[Issue]:
    """Istio's ``validateGatewayNames``: 'mesh', a Gateway name, or 'namespace/name'."""
    out = []
    for i, name in enumerate(names or []):
        ns, slash, gw = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                out.append(warning(path + (i,), f"legacy gateway name {name!r}; prefer the namespace/name form: "
                                                f"{parts[1]}/{parts[0]!s}"))
            problem = host_problem(name, wildcard=False, rule="name a Gateway, 'namespace/name' or 'mesh'")
            if problem:
                out.append(Issue(path + (i,), f"gateway {name!r} is not a valid name: name a Gateway, "
                                              f"'namespace/name' or 'mesh'"))
            continue
        if not ns or not gw:
            out.append(Issue(path + (i,), f"gateway {name!r}: the namespace and the name must not be empty"))
        elif not is_dns_label(ns):
            out.append(Issue(path + (i,), f"gateway {name!r}: invalid namespace {ns!r}"))
        elif not is_dns_label(gw):
            out.append(Issue(path + (i,), f"gateway {name!r}: invalid gateway name {gw!r} (a DNS label, no dots)"))
    return out


ServiceEntryHost = Annotated[str, checked(_service_entry_host)]
DestinationHost = Annotated[str, checked(_destination_host)]
GatewayHost = Annotated[str, checked(gateway_host_problem)]
WildcardHost = Annotated[str, checked(host_problem)]


# --- selectors -----------------------------------------------------------------------------------


class WorkloadSelector(Spec):
    """networking.istio.io's selector (ServiceEntry, Sidecar): ``labels``."""

    labels: dict[str, str] = Field(default_factory=dict)

    def issues(self, where: Where) -> Iterable[Issue]:
        return selector_issues(self.labels, ("labels",), "workloadSelector")


class PolicySelector(Spec):
    """The selector of DestinationRule and the security policies: ``matchLabels``."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return selector_issues(self.match_labels or {}, ("matchLabels",), "selector")


# --- destinations --------------------------------------------------------------------------------


class PortSelector(Spec):
    number: int = Field(ge=1, le=65535)


class Destination(Spec):
    host: DestinationHost
    subset: SubsetName | None = None
    port: PortSelector | None = None

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        return partial_wildcard_unsupported(("host",), self.host)


def partial_wildcard_unsupported(at: Path, host: str) -> list[tuple[str | Path, str]]:
    """EG0006 for a partial wildcard host (``*example.com``), which Istio accepts where exitgate
    matches hosts by whole labels only (``*.example.com``)."""
    if not is_partial_wildcard(host):
        return []
    return [(at, f"partial wildcard host {host!r} is not supported by exitgate yet (it matches a wildcard only "
                 f"as the whole first label, like *.example.com)")]
