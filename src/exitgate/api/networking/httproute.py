"""A VirtualService's HTTP routes: request matches (string, header and regex rules), route
destinations, header operations, redirects, direct responses, rewrites, retries, fault
injection, mirroring and CORS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import Field, model_validator

from exitgate.api.base import (
    Duration,
    Issue,
    Path,
    Spec,
    Where,
    is_dns_label,
    labels_issues,
    warning,
)
from exitgate.api.networking.common import Destination, gateway_name_issues


_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")
RE2_UNSUPPORTED = re.compile(r"\(\?[=!<]|\\[1-9]")


def _regex_problem(regex: str) -> str | None:
    if not regex:
        return "a regex match must not be empty"
    if len(regex) > 1024:
        return "regex is too long: at most 1024 characters"
    if RE2_UNSUPPORTED.search(regex):
        return f"regex {regex!r} uses lookaround or a backreference, which RE2 (Envoy's regex engine) does not have"
    try:
        re.compile(regex)
    except re.error as e:
        return f"regex {regex!r} is invalid: {e}; Istio uses RE2 syntax"
    return None


def _header_name_issues(names: Iterable[str], path: Path, *, claims: bool = False) -> list[Issue]:
    out = []
    for name in names:
        if claims and name.startswith("@request.auth.claims"):
            continue
        if not _HEADER_NAME.match(name):
            out.append(Issue(path + (name,), f"header name {name!r} is invalid: letters, digits, '-' and '_' only"))
    return out


class StringMatch(Spec):
    """Empty (``{}``) is allowed, as in Istio: for a header, query parameter or withoutHeaders
    it means "present"; for ``uri`` it matches every path."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) > 1:
            raise ValueError("set exactly one of exact, prefix or regex, or none ({} matches any value)")
        return self

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.prefix == "":
            return [Issue(("prefix",), "a prefix match must not be empty; to match everything leave the match out")]
        if self.regex is not None:
            problem = _regex_problem(self.regex)
            if problem:
                return [Issue(("regex",), problem)]
        return []


class HTTPMatchRequest(Spec):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] | None = None
    source_namespace: str | None = None
    stat_prefix: str | None = None

    # Whether a match's source labels or namespace select a proxy is not decided by the routes
    # (they are built without the proxy's labels), so these stay reported.
    UNSUPPORTED = frozenset({"source_labels", "source_namespace"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        # JWT claims are matched on RequestAuthentication's metadata, which exitgate has not.
        return [((field, name), f"matching {name} is not supported by exitgate yet (it needs RequestAuthentication)")
                for field, values in (("headers", self.headers), ("withoutHeaders", self.without_headers))
                for name in values or {} if name.startswith("@request.auth.claims")]

    def issues(self, where: Where) -> Iterable[Issue]:
        out = _header_name_issues(self.headers or {}, ("headers",), claims=True)
        out += _header_name_issues(self.without_headers or {}, ("withoutHeaders",), claims=True)
        out += labels_issues(self.source_labels, ("sourceLabels",))
        out += gateway_name_issues(self.gateways, ("gateways",))
        if self.source_namespace is not None and not is_dns_label(self.source_namespace):
            out.append(Issue(("sourceNamespace",), f"sourceNamespace {self.source_namespace!r} is not a namespace name"))
        return out


class HeaderOperations(Spec):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(Spec):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        for side, ops in (("request", self.request), ("response", self.response)):
            if ops is None:
                continue
            for op in ("set", "add", "remove"):
                values: dict[str, str] | list[str] | None = getattr(ops, op)
                items = list(values.items()) if isinstance(values, dict) else [(n, "") for n in values or []]
                for i, (name, value) in enumerate(items):
                    at: Path = (side, op, name) if isinstance(values, dict) else (side, op, i)
                    lower = name.lower()
                    authority = side == "request" and op != "remove" and lower in (":authority", "host")
                    if not name:
                        out.append(Issue(at, "header name must not be empty"))
                    elif not authority and (name.startswith(":") or lower == "host"):
                        out.append(Issue(at, f"header {name!r} cannot be changed here (':' pseudo-headers and Host "
                                             f"are managed by the proxy; rewrite the authority with rewrite.authority)"))
                    elif not _HEADER_VALUE.match(value):
                        out.append(Issue(at, f"header {name!r}: the value has control characters"))
        return out


class HTTPRouteDestination(Spec):
    destination: Destination
    # Relative: Istio takes any weights but all zero (Envoy splits by their sum).
    weight: int | None = Field(default=None, ge=0, le=2**31 - 1)
    headers: Headers | None = None


class HTTPRedirect(Spec):
    uri: str | None = None
    prefix_rewrite: str | None = None
    authority: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: int | None = None

    UNSUPPORTED = frozenset({"prefix_rewrite"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        # Envoy's redirect action has only these codes; Istio drops the route's action otherwise.
        if self.redirect_code is not None and 300 <= self.redirect_code <= 399 and self.redirect_code not in REDIRECT_CODES:
            return [("redirectCode", f"redirect code {self.redirect_code} is not supported: "
                                     f"use one of {', '.join(map(str, sorted(REDIRECT_CODES)))}")]
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.uri and self.prefix_rewrite:
            out.append(Issue(("prefixRewrite",), "a redirect takes uri or prefixRewrite, not both"))
        if not (self.uri or self.prefix_rewrite or self.authority or self.port or self.derive_port or self.scheme):
            out.append(Issue((), "a redirect must set uri, prefixRewrite, authority, scheme or port"))
        if self.redirect_code is not None and not 300 <= self.redirect_code <= 399:
            out.append(Issue(("redirectCode",), f"redirect code {self.redirect_code} must be 3xx"))
        if self.scheme is not None and self.scheme not in ("http", "https"):
            out.append(Issue(("scheme",), "redirect scheme must be http or https"))
        return out


class HTTPBody(Spec):
    string: str | None = None
    bytes: str | None = None


class HTTPDirectResponse(Spec):
    status: int = Field(ge=200, le=600)
    body: HTTPBody | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        body = (self.body.string or self.body.bytes or "") if self.body else ""
        if len(body) > 1024 * 1024:
            return [Issue(("body",), "a direct response body must be less than 1MB")]
        if len(body) > 100 * 1024:
            return [warning(("body",), "large direct response bodies slow the control plane down")]
        return []


class Delegate(Spec):
    name: str | None = None
    namespace: str | None = None


class RegexRewrite(Spec):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(Spec):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.uri and self.uri_regex_rewrite is not None:
            out.append(Issue(("uriRegexRewrite",), "a rewrite takes uri or uriRegexRewrite, not both"))
        if not self.uri and self.uri_regex_rewrite is None and not self.authority:
            out.append(Issue((), "a rewrite must set uri, uriRegexRewrite or authority"))
        rx = self.uri_regex_rewrite
        if rx is not None:
            if not rx.match or not rx.rewrite:
                out.append(Issue(("uriRegexRewrite",), "uriRegexRewrite needs both match and rewrite"))
            elif _regex_problem(rx.match):
                out.append(Issue(("uriRegexRewrite", "match"), _regex_problem(rx.match) or ""))
        return out


RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})


class HTTPRetry(Spec):
    attempts: int | None = Field(default=None, ge=0)
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if not self.attempts and (self.per_try_timeout or self.retry_on or self.retry_remote_localities is not None):
            out.append(Issue(("attempts",), "retries are configured but attempts is 0 (retries off); set attempts"))
        for policy in (self.retry_on or "").split(",") if self.retry_on else []:
            if policy not in RETRY_ON and not (policy.isdigit() and 100 <= int(policy) <= 599):
                out.append(Issue(("retryOn",), f"{policy!r} is not a retryOn policy (like 5xx, connect-failure, "
                                               f"reset or an HTTP status code)"))
        return out


# Envoy's redirect response codes (RedirectAction.RedirectResponseCode), as Istio maps them.
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

# gRPC status names -> codes (Istio's grpc.SupportedGRPCStatus), for ``abort.grpcStatus``.
GRPC_STATUS = {name: code for code, name in enumerate((
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"))}


class Percent(Spec):
    value: float = Field(ge=0, le=100)


class FaultDelay(Spec):
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: int | None = Field(default=None, ge=0, le=100)

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.exponential_delay is not None:
            return [Issue(("exponentialDelay",), "exponentialDelay is not supported by Istio; use fixedDelay")]
        return []


class FaultAbort(Spec):
    http_status: int | None = Field(default=None, ge=200, le=600)
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        if self.http_status is None and self.grpc_status is not None and self.grpc_status not in GRPC_STATUS:
            return [("grpcStatus", f"grpcStatus {self.grpc_status!r} is not a gRPC status name "
                                   f"(like UNAVAILABLE or DEADLINE_EXCEEDED)")]
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.http2_error is not None:
            return [Issue(("http2Error",), "http2Error aborts are not supported by Istio; use httpStatus")]
        if self.http_status is None and self.grpc_status is None:
            return [warning((), "abort is configured without httpStatus or grpcStatus")]
        return []


class HTTPFaultInjection(Spec):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.delay is None and self.abort is None:
            return [Issue((), "fault injection needs an abort, a delay or both")]
        return []


class HTTPMirrorPolicy(Spec):
    destination: Destination
    percentage: Percent | None = None


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})


class CorsPolicy(Spec):
    allow_origins: list[StringMatch] | None = None
    allow_origin: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        for i, m in enumerate(self.allow_methods or []):
            if m not in HTTP_METHODS:
                out.append(Issue(("allowMethods", i), f"{m!r} is not an HTTP method ({', '.join(sorted(HTTP_METHODS))})"))
        for field, names in (("allowHeaders", self.allow_headers), ("exposeHeaders", self.expose_headers)):
            for i, name in enumerate(names or []):
                if name != "*" and not _HEADER_NAME.match(name):
                    out.append(Issue((field, i), f"header name {name!r} is invalid: letters, digits, '-' and '_' only"))
        return out


class HTTPRoute(Spec):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    mirror_percentage: Percent | None = None
    mirror_percent: int | None = Field(default=None, ge=0, le=100)
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    # delegate needs the delegate VirtualServices merged in; corsPolicy needs Envoy's CORS filter.
    UNSUPPORTED = frozenset({"delegate", "cors_policy"})

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        # A destination's headers are translated when it is the only one (merged into the route,
        # as Istio does); per weighted cluster they are not yet.
        if self.route and len(self.route) > 1:
            return [(("route", i, "headers"), "headers on one of several weighted destinations are not supported "
                                              "by exitgate yet; set them on the route")
                    for i, d in enumerate(self.route) if d.headers is not None]
        return []

    @model_validator(mode="after")
    def _weights(self) -> HTTPRoute:
        # Istio's validateHTTPRouteDestinations: weights are relative, only all zero is wrong.
        if self.route and len(self.route) > 1 and sum(d.weight or 0 for d in self.route) == 0:
            raise ValueError("the route weights add up to 0; give the destinations weights")
        if not self.route and self.redirect is None and self.direct_response is None and self.delegate is None:
            raise ValueError("an http route needs route, redirect, directResponse or delegate")
        return self

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.delegate is not None:
            for name in ("route", "redirect"):
                if getattr(self, name) is not None:
                    out.append(Issue((name,), f"a route with delegate cannot also set {name}"))
        if self.redirect is not None:
            for name, alias in (("route", "route"), ("fault", "fault"), ("rewrite", "rewrite"),
                                ("direct_response", "directResponse")):
                if getattr(self, name):
                    out.append(Issue((alias,), f"a route with redirect cannot also set {alias}"))
            if self.redirect.prefix_rewrite and any(m.uri is not None and m.uri.prefix is None
                                                    for m in self.match or []):
                out.append(Issue(("redirect", "prefixRewrite"), "redirect prefixRewrite needs every uri match of "
                                                                "the route to be a prefix match"))
        if self.mirror_percent is not None:
            out.append(warning(("mirrorPercent",), "mirrorPercent is deprecated; use mirrorPercentage"))
        out.extend(self._authority_issues())
        return out

    def _authority_issues(self) -> list[Issue]:
        """Istio's ``validateAuthorityRewrite``: the authority is rewritten once, by
        ``rewrite.authority`` or one ``:authority``/``Host`` request header operation."""
        request = self.headers.request if self.headers is not None else None
        setters: list[tuple[Path, str]] = [(("rewrite", "authority"), "rewrite.authority")] \
            if self.rewrite is not None and self.rewrite.authority else []
        for op in ("set", "add"):
            for name in (getattr(request, op) or {}) if request is not None else {}:
                if name.lower() in (":authority", "host"):
                    setters.append((("headers", "request", op, name), f"headers.request.{op}[{name}]"))
        if len(setters) < 2:
            return []
        return [Issue(setters[1][0], f"the authority is rewritten twice, by {setters[0][1]} and {setters[1][1]}; "
                                     f"keep one")]
