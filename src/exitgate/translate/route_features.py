"""One VirtualService HTTP route's traffic features -> IR, as Istio's
``pilot/pkg/networking/core/route/route.go`` and ``route/retry/retry.go`` translate them:
request matches, retries (with Istio's default policy), timeouts, fault injection, header
operations, rewrites, redirects, direct responses and mirrors.

Pure. routing.py decides which routes exist (contexts, ports, match order); this module fills
each one in.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from exitgate import ir
from exitgate.api.networking.httproute import (
    GRPC_STATUS,
    REDIRECT_CODES,
    FaultAbort,
    Headers,
    HeaderOperations,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    StringMatch,
)
from exitgate.translate.traffic_policy import seconds

# Istio's default retry policy (retry.go ``cachedDefaultPolicy``), on every route to a cluster
# whose VirtualService does not set ``retries``. Since Istio 1.24 (the 1.23 compatibility profile
# removed, #56023) it has no retriable status codes: "retriable-status-codes" alone retries none,
# so a 503 from the upstream is not retried.
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY = ir.RetryPolicy(attempts=2, retry_on=DEFAULT_RETRY_ON)



# --- matches ----------------------------------------------------------------------------------------

def _string_match(m: StringMatch) -> ir.StringMatch | None:
    """Istio's ConvertToEnvoyMatch; None where Istio writes ``present_match``: an empty match or
    the regex ``*`` (not RE2, Istio's presence spelling, istio/istio#20629)."""
    if m.exact is not None:
        return ir.StringMatch(ir.StringMatchKind.EXACT, m.exact)
    if m.prefix is not None:
        return ir.StringMatch(ir.StringMatchKind.PREFIX, m.prefix)
    if m.regex is not None and m.regex != "*":
        return ir.StringMatch(ir.StringMatchKind.REGEX, m.regex)
    return None


def header_matches(m: HTTPMatchRequest) -> tuple[ir.RouteHeaderMatch, ...]:
    """Istio's TranslateRouteMatch header part: ``headers`` and ``withoutHeaders`` sorted by name,
    then ``:method``, ``:authority`` and ``:scheme``, all of them required together (AND)."""
    out = [ir.RouteHeaderMatch(name, _string_match(sm)) for name, sm in (m.headers or {}).items()]
    for name, sm in (m.without_headers or {}).items():
        value: ir.StringMatch | None = _string_match(sm)
        # A request without the header does not match a value, so "without" matches it; Envoy
        # needs to be told (treat_missing_header_as_empty conflicts with a presence match).
        out.append(ir.RouteHeaderMatch(name, value, invert=True, treat_missing_as_empty=value is not None))
    out.sort(key=lambda h: h.name)
    for name, pseudo in ((":method", m.method), (":authority", m.authority), (":scheme", m.scheme)):
        if pseudo is not None:
            out.append(ir.RouteHeaderMatch(name, _string_match(pseudo)))
    return tuple(out)


def query_matches(m: HTTPMatchRequest) -> tuple[ir.QueryParamMatch, ...]:
    return tuple(ir.QueryParamMatch(name, _string_match(sm)) for name, sm in (m.query_params or {}).items())


def path_match(m: HTTPMatchRequest | None) -> dict[str, Any]:
    """The Route fields of the path part: prefix ``/`` unless ``uri`` says otherwise."""
    if m is None or m.uri is None:
        out: dict[str, Any] = {"prefix": "/"}
    elif m.uri.exact is not None:
        out = {"prefix": m.uri.exact, "exact": True}
    elif m.uri.regex is not None:
        out = {"prefix": "/", "path_regex": m.uri.regex}
    else:
        out = {"prefix": m.uri.prefix or "/"}
    if m is not None and m.ignore_uri_case:
        out["ignore_case"] = True
    return out


# --- retries, timeout, fault ----------------------------------------------------------------------

def retry_policy(r: HTTPRetry | None) -> ir.RetryPolicy | None:
    """Istio's retry.ConvertPolicy (no consistent hashing here: previous_hosts is kept)."""
    if r is None:
        return DEFAULT_RETRY
    if not r.attempts:
        return None  # attempts 0 explicitly disables retries
    retry_on, codes = DEFAULT_RETRY_ON, tuple[int, ...]()
    if r.retry_on:
        parts = [p.strip() for p in r.retry_on.split(",") if p.strip()]
        # Integers are status codes (Go's http.StatusText decides which are real ones).
        code_list = [int(p) for p in parts if p.isdigit() and _is_status(int(p))]
        names = [p for p in parts if not (p.isdigit() and _is_status(int(p)))]
        retry_on, codes = ",".join(names), tuple(code_list)
        if codes and "retriable-status-codes" not in retry_on:
            retry_on = f"{retry_on},retriable-status-codes" if retry_on else "retriable-status-codes"
    return ir.RetryPolicy(
        attempts=r.attempts, retry_on=retry_on, retriable_status_codes=codes,
        per_try_timeout_s=seconds(r.per_try_timeout) if r.per_try_timeout else None,
        previous_hosts=r.retry_ignore_previous_hosts if r.retry_ignore_previous_hosts is not None else True,
        remote_localities=bool(r.retry_remote_localities),
        backoff_s=seconds(r.backoff) if r.backoff else None,
    )


def _is_status(code: int) -> bool:
    try:
        HTTPStatus(code)
    except ValueError:
        return False
    return True


def _abort_percent(a: FaultAbort) -> float:
    # Istio leaves the percentage out when it is not given, and Envoy then aborts no request
    # (Istio's API: "If not specified, no request will be aborted").
    return a.percentage.value if a.percentage is not None else 0.0


def fault(f: HTTPFaultInjection | None) -> ir.FaultInjection | None:
    """Istio's TranslateFault: a delay needs ``fixedDelay``; ``percentage`` wins over the
    deprecated integer ``percent`` (unset: 0, as Istio translates it)."""
    if f is None:
        return None
    delay_s, delay_pct = None, 0.0
    if f.delay is not None and f.delay.fixed_delay is not None:
        delay_s = seconds(f.delay.fixed_delay)
        delay_pct = f.delay.percentage.value if f.delay.percentage is not None else float(f.delay.percent or 0)
    http_status = grpc_status = None
    abort_pct = 0.0
    if f.abort is not None and (f.abort.http_status is not None or f.abort.grpc_status in GRPC_STATUS):
        http_status = f.abort.http_status
        grpc_status = GRPC_STATUS[f.abort.grpc_status] if http_status is None and f.abort.grpc_status else None
        abort_pct = _abort_percent(f.abort)
    if delay_s is None and http_status is None and grpc_status is None:
        return None
    return ir.FaultInjection(delay_s, delay_pct, http_status, grpc_status, abort_pct)


# --- headers, rewrite, redirect ---------------------------------------------------------------------

def _internal(name: str) -> bool:
    # Pseudo-headers and Host cannot be changed by header operations (Istio's isInternalHeader);
    # ``:authority``/``host`` in set/add become the authority rewrite instead.
    return name.startswith(":") or name.lower() == "host"


def _authority(ops: HeaderOperations | None) -> str | None:
    if ops is None:
        return None
    found = None
    for values in (ops.add, ops.set):  # ``set`` wins over ``add`` (TranslateHeadersOperations)
        for name, value in (values or {}).items():
            if name.lower() in (":authority", "host"):
                found = value
    return found


def _adds(values: dict[str, str] | None, append: bool) -> list[ir.HeaderValue]:
    # Sorted by name, as Istio sorts (stable output regardless of YAML order).
    return [ir.HeaderValue(k, v, append) for k, v in sorted((values or {}).items()) if not _internal(k)]


def _ops(headers: Headers | None) -> ir.HeaderOps:
    req, resp = (headers.request, headers.response) if headers else (None, None)
    return ir.HeaderOps(
        request_add=tuple(_adds(req.set if req else None, False) + _adds(req.add if req else None, True)),
        request_remove=tuple(n for n in (req.remove or [] if req else []) if not _internal(n)),
        response_add=tuple(_adds(resp.set if resp else None, False) + _adds(resp.add if resp else None, True)),
        response_remove=tuple(n for n in (resp.remove or [] if resp else []) if not _internal(n)),
    )


def header_ops(http: HTTPRoute) -> tuple[ir.HeaderOps | None, str | None]:
    """The route's header operations and the authority they set: the route's own, then (for a
    single destination, as Istio's processDestination does) the destination's, appended."""
    parts = [http.headers]
    if http.route and len(http.route) == 1:
        parts.append(http.route[0].headers)
    ops = [_ops(h) for h in parts if h is not None]
    authority = _authority(http.headers.request) if http.headers else None
    if authority is None and len(parts) == 2 and parts[1] is not None:
        # The destination's authority counts only when the route's own does not set one.
        authority = _authority(parts[1].request)
    if not ops:
        return None, None
    merged = ir.HeaderOps(
        request_add=tuple(v for o in ops for v in o.request_add),
        request_remove=tuple(v for o in ops for v in o.request_remove),
        response_add=tuple(v for o in ops for v in o.response_add),
        response_remove=tuple(v for o in ops for v in o.response_remove),
    )
    return (merged if merged != ir.HeaderOps() else None), authority


def rewrite(r: HTTPRewrite | None, authority: str | None) -> ir.Rewrite | None:
    """Istio: uriRegexRewrite wins over uri; ``rewrite.authority`` over a header-set authority."""
    prefix = regex = substitution = None
    if r is not None:
        if r.uri_regex_rewrite is not None and r.uri_regex_rewrite.match:
            regex, substitution = r.uri_regex_rewrite.match, r.uri_regex_rewrite.rewrite or ""
        elif r.uri:
            prefix = r.uri
        if r.authority:
            authority = r.authority
    if prefix is None and regex is None and authority is None:
        return None
    return ir.Rewrite(prefix, regex, substitution, authority)


def redirect(r: HTTPRedirect, listen_port: int, is_tls: bool = False) -> ir.Redirect | None:
    """Istio's ApplyRedirect. ``derivePort: FROM_REQUEST_PORT`` is the listener's port (routes are
    built per port); the scheme's default port is left out. None for a code Istio refuses."""
    code = r.redirect_code or 301
    if code not in REDIRECT_CODES:
        return None
    port = None
    if r.port is not None or r.derive_port is not None:
        port = r.port if r.port is not None else (listen_port if r.derive_port == "FROM_REQUEST_PORT" else None)
        scheme = r.scheme or ("https" if is_tls else "http")
        if (port == 80 and scheme == "http") or (port == 443 and scheme == "https"):
            port = None
    return ir.Redirect(path=r.uri or None, host=r.authority or None, port=port, scheme=r.scheme or None, code=code)


def mirror_percent(value: float | None, deprecated: int | None = None) -> float | None:
    """Istio's MirrorPercent: unset is 100%; an explicit 0 means no mirroring (None)."""
    if value is not None:
        return value if value > 0 else None
    if deprecated is not None:
        return float(deprecated) if deprecated > 0 else None
    return 100.0
