"""The VirtualService kind: the spec with its hosts and gateways, and the TLS and TCP routes
(the HTTP routes are in ``httproute``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import Field

from exitgate.api.base import (
    IPOrCIDR,
    Issue,
    Path,
    Spec,
    Where,
    export_to_issues,
    host_problem,
    is_ip,
    labels_issues,
    warning,
)
from exitgate.api.networking.common import (
    Destination,
    gateway_name_issues,
    host_matches,
    host_subset_of,
    partial_wildcard_unsupported,
)
from exitgate.api.networking.httproute import HTTPRoute


class L4MatchAttributes(Spec):
    UNSUPPORTED = frozenset({"destination_subnets", "source_subnet", "source_labels", "source_namespace"})

    destination_subnets: list[IPOrCIDR] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    source_subnet: str | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return labels_issues(self.source_labels, ("sourceLabels",)) + gateway_name_issues(self.gateways, ("gateways",))


class TLSMatchAttributes(Spec):
    UNSUPPORTED = frozenset({"destination_subnets", "source_labels", "source_namespace"})

    sni_hosts: list[str] = Field(min_length=1)
    destination_subnets: list[IPOrCIDR] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return labels_issues(self.source_labels, ("sourceLabels",)) + gateway_name_issues(self.gateways, ("gateways",))


class RouteDestination(Spec):
    destination: Destination
    weight: int | None = Field(default=None, ge=0)


def _route_weight_issues(route: Sequence[RouteDestination]) -> list[Issue]:
    if len(route) > 1 and sum(d.weight or 0 for d in route) == 0:
        return [Issue(("route",), "the route weights add up to 0; give the destinations weights")]
    return []


class TLSRoute(Spec):
    match: list[TLSMatchAttributes] = Field(min_length=1)
    route: list[RouteDestination] = Field(min_length=1)

    def issues(self, where: Where) -> Iterable[Issue]:
        return _route_weight_issues(self.route)


class TCPRoute(Spec):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] = Field(min_length=1)

    def issues(self, where: Where) -> Iterable[Issue]:
        return _route_weight_issues(self.route)


MESH = "mesh"


class VirtualServiceSpec(Spec):
    # None (or []) makes a delegate: the HTTP routes another VirtualService hands a request to
    # with ``http[].delegate``. Istio validates them; exitgate does not route by them yet.
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    export_to: list[str] | None = None

    @property
    def is_delegate(self) -> bool:
        return not self.hosts

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        out: list[tuple[str | Path, str]] = []
        if self.is_delegate:
            out.append(((), "a VirtualService without hosts is a delegate (the routes another VirtualService hands "
                            "over with http[].delegate), which exitgate does not support yet"))
        out += [u for i, h in enumerate(self.hosts) for u in partial_wildcard_unsupported(("hosts", i), h)]
        out += [u for i, route in enumerate(self.tls or []) for j, m in enumerate(route.match)
                for k, sni in enumerate(m.sni_hosts)
                for u in partial_wildcard_unsupported(("tls", i, "match", j, "sniHosts", k), sni)]
        return out

    def _delegate_issues(self) -> list[Issue]:
        """Istio's rules for a delegate: HTTP routes only, no gateways, no delegating again."""
        out = []
        for field, value in (("gateways", self.gateways), ("tls", self.tls), ("tcp", self.tcp)):
            if value:
                what = "gateways (the VirtualService delegating to it decides those)" if field == "gateways" else \
                    f"{field} routes (only HTTP routes can be delegated)"
                out.append(Issue((field,), f"a delegate VirtualService (one without hosts) takes no {what}"))
        for i, http in enumerate(self.http or []):
            if http.delegate is not None:
                out.append(Issue(("http", i, "delegate"), "a delegate VirtualService's route cannot delegate again"))
        return out

    def issues(self, where: Where) -> Iterable[Issue]:
        out = self._delegate_issues() if self.is_delegate else []
        out += gateway_name_issues(self.gateways, ("gateways",))
        bound_to_gateway = bool(self.gateways) and MESH not in (self.gateways or [])
        valid = True
        for i, host in enumerate(self.hosts):
            problem = host_problem(host)
            if problem and not is_ip(host):
                out.append(Issue(("hosts", i), problem))
                valid = False
            elif host == "*" and not bound_to_gateway:
                out.append(Issue(("hosts", i), "host '*' is allowed only in a VirtualService bound to gateways "
                                               "(not 'mesh'); name the hosts"))
                valid = False
        if valid:
            for j, b in enumerate(self.hosts):
                for i, a in enumerate(self.hosts[:j]):
                    if host_matches(a, b):
                        out.append(Issue(("hosts", j), f"duplicate host: {b!r} overlaps hosts[{i}] {a!r}; "
                                                       f"list each host once"))
                        break
        if not self.http and not self.tcp and not self.tls:
            out.append(Issue((), "a VirtualService needs http, tcp or tls routes"))
        if not bound_to_gateway:
            for i, http in enumerate(self.http or []):
                for j, match in enumerate(http.match or []):
                    for field, headers in (("headers", match.headers), ("withoutHeaders", match.without_headers)):
                        for name in headers or {}:
                            if name.startswith("@request.auth.claims"):
                                out.append(Issue(("http", i, "match", j, field, name),
                                                 "JWT claim based routing works only for VirtualServices bound to "
                                                 "gateways"))
        for i, route in enumerate(self.tls or []):
            for j, tls_match in enumerate(route.match):
                for k, sni in enumerate(tls_match.sni_hosts):
                    at: Path = ("tls", i, "match", j, "sniHosts", k)
                    problem = host_problem(sni)
                    if problem:
                        out.append(warning(at, f"SNI host {sni!r} is an IP address, which most clients never send")
                                   if is_ip(sni) else Issue(at, problem))
                    elif not any(host_subset_of(sni, h) for h in self.hosts):
                        out.append(Issue(at, f"SNI host {sni!r} is not one of this VirtualService's hosts "
                                             f"({', '.join(self.hosts)})"))
        out.extend(export_to_issues(self.export_to, where.namespace, ("exportTo",)))
        return out
