"""Istio's ``security.istio.io`` AuthorizationPolicy (v1beta1, v1), parsed and validated as
Istio does (``ValidateAuthorizationPolicy``, ``pkg/config/security``). exitgate enforces them at
the egress gateway (translate/authz.py → Envoy's RBAC filter). What it cannot enforce yet is
marked here, so the loader reports it (EG0006) after the real mistakes: action CUSTOM (and its
provider), ``targetRef``/``targetRefs``, ``requestPrincipals``/``notRequestPrincipals`` and the
``request.auth.*`` and ``experimental.*`` condition keys (they need RequestAuthentication or
filters exitgate does not run). Translation fails closed on each of them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import Field

from exitgate.api.base import Issue, Path, Spec, Where, is_dns_label, warning
from exitgate.api.networking import PolicySelector

ALLOWED_TARGETS = {("", "Service"), ("core", "Service"), ("networking.istio.io", "ServiceEntry"),
                   ("gateway.networking.k8s.io", "Gateway")}


class TargetRef(Spec):
    group: str | None = None
    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    namespace: str | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if (self.group or "", self.kind) not in ALLOWED_TARGETS:
            out.append(Issue(("kind",), f"targetRef must name a Service, a networking.istio.io ServiceEntry or a "
                                        f"gateway.networking.k8s.io Gateway, not {self.group or 'core'}/{self.kind}"))
        if self.namespace:
            out.append(Issue(("namespace",), "targetRef namespace must not be set: a policy targets resources in its "
                                             "own namespace"))
        return out


class Source(Spec):
    # JWT identities need RequestAuthentication (Envoy's jwt_authn filter), which exitgate lacks;
    # trust domains are matched on the peer certificate's trust domain, which it does not read yet.
    UNSUPPORTED = frozenset({"request_principals", "not_request_principals", "trust_domains", "not_trust_domains"})

    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    service_accounts: list[str] | None = Field(default=None, max_length=16)
    not_service_accounts: list[str] | None = Field(default=None, max_length=16)
    ip_blocks: list[str] | None = None
    not_ip_blocks: list[str] | None = None
    remote_ip_blocks: list[str] | None = None
    not_remote_ip_blocks: list[str] | None = None
    trust_domains: list[str] | None = None
    not_trust_domains: list[str] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        if not any(getattr(self, f) for f in type(self).model_fields):
            out.append(Issue((), "source must not be empty: set principals, namespaces, serviceAccounts, ipBlocks, "
                                 "requestPrincipals, remoteIpBlocks, trustDomains or their not* forms"))
        if (self.principals or self.not_principals or self.namespaces or self.not_namespaces) and \
                (self.service_accounts or self.not_service_accounts):
            out.append(Issue(("serviceAccounts" if self.service_accounts else "notServiceAccounts",),
                             "serviceAccounts cannot be combined with namespaces or principals"))
        for name in type(self).model_fields:
            alias = type(self).model_fields[name].alias or name
            values: list[str] | None = getattr(self, name)
            out.extend(_empty_value_issues(values, (alias,)))
            for i, value in enumerate(values or []):
                at: Path = (alias, i)
                if not value:
                    continue
                if name.endswith("ip_blocks"):
                    problem = ip_block_problem(value)
                    if problem:
                        out.append(Issue(at, problem))
                elif name.endswith("service_accounts"):
                    problem = service_account_problem(value)
                    if problem:
                        out.append(Issue(at, problem))
                elif name.endswith("trust_domains"):
                    problem = wildcard_value_problem(value) or \
                        (f"trust domain {value!r} must not contain '/' (like cluster.local)" if "/" in value else None)
                    if problem:
                        out.append(Issue(at, problem))
                elif name.endswith("principals"):
                    out.extend(_match_form_issues(value, at))
                    if name in ("principals", "not_principals") and value.startswith("spiffe://"):
                        out.append(warning(at, f"principal {value!r} never matches: principals are written without "
                                               f"spiffe://, like cluster.local/ns/default/sa/sleep"))
                elif name.endswith("namespaces"):
                    out.extend(_match_form_issues(value, at))
                    if "*" not in value and not is_dns_label(value):
                        out.append(warning(at, f"{value!r} is not a namespace name, so it never matches"))
        return out


class Operation(Spec):
    hosts: list[str] | None = None
    not_hosts: list[str] | None = None
    ports: list[str] | None = None
    not_ports: list[str] | None = None
    methods: list[str] | None = None
    not_methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        if not any(getattr(self, f) for f in type(self).model_fields):
            out.append(Issue((), "operation must not be empty: set hosts, ports, methods, paths or their not* forms"))
        for name in type(self).model_fields:
            alias = type(self).model_fields[name].alias or name
            values: list[str] | None = getattr(self, name)
            out.extend(_empty_value_issues(values, (alias,)))
            for i, value in enumerate(values or []):
                if not value:
                    continue
                if name.endswith("ports"):
                    problem = port_value_problem(value)
                    if problem:
                        out.append(Issue((alias, i), problem))
                elif name.endswith("paths"):
                    problem = path_template_problem(value)
                    if problem:
                        out.append(Issue((alias, i), problem))
                    elif "{" not in value:
                        out.extend(_match_form_issues(value, (alias, i)))
                else:
                    out.extend(_match_form_issues(value, (alias, i)))
        return out


class RuleFrom(Spec):
    source: Source | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.source is None:
            return [Issue((), "each from entry needs a source")]
        return []


class RuleTo(Spec):
    operation: Operation | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.operation is None:
            return [Issue((), "each to entry needs an operation")]
        return []


class Condition(Spec):
    key: str
    values: list[str] | None = None
    not_values: list[str] | None = None

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        if self.key == "source.trustDomain":
            return [("key", "source.trustDomain is not supported by exitgate yet")]
        if self.key.startswith("request.auth."):
            return [("key", f"{self.key} is not supported by exitgate yet (it needs RequestAuthentication)")]
        if self.key.startswith("experimental."):
            return [("key", f"{self.key} is not supported by exitgate yet")]
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        if not self.key:
            return [Issue(("key",), "a when condition needs a key, like request.headers[x-token] or source.ip")]
        if not self.values and not self.not_values:
            return [Issue((), f"condition {self.key!r} needs values or notValues")]
        out = []
        problem = attribute_key_problem(self.key)
        if problem:
            return [Issue(("key",), problem)]
        for field, values in (("values", self.values), ("notValues", self.not_values)):
            out.extend(_empty_value_issues(values, (field,)))
            for i, value in enumerate(values or []):
                problem = attribute_value_problem(self.key, value) if value else None
                if problem:
                    out.append(Issue((field, i), problem))
        return out


class Rule(Spec):
    from_: list[RuleFrom] | None = Field(default=None, alias="from")
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if self.from_ is not None and not self.from_:
            out.append(Issue(("from",), "from must not be empty; leave it out to match any source"))
        if self.to is not None and not self.to:
            out.append(Issue(("to",), "to must not be empty; leave it out to match any operation"))
        return out


class Provider(Spec):
    name: str | None = None


Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]
CUSTOM_UNSUPPORTED_SOURCE = ("namespaces", "not_namespaces", "service_accounts", "not_service_accounts",
                             "trust_domains", "not_trust_domains", "principals", "not_principals",
                             "request_principals", "not_request_principals")


class AuthorizationPolicySpec(Spec):
    # Gateway API / Service attachment; Istio ignores these for a gateway that is not a Gateway API one.
    UNSUPPORTED = frozenset({"target_ref", "target_refs"})

    selector: PolicySelector | None = None
    target_ref: TargetRef | None = None
    target_refs: list[TargetRef] | None = Field(default=None, max_length=16)
    rules: list[Rule] | None = None
    action: Action | None = None
    provider: Provider | None = None

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        if self.action == "CUSTOM":
            return [("action", "action CUSTOM (an external authorizer) is not supported by exitgate yet")]
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        set_ = [a for a, v in (("selector", self.selector), ("targetRef", self.target_ref),
                               ("targetRefs", self.target_refs)) if v]
        if len(set_) > 1:
            out.append(Issue((set_[1],), f"only one of selector, targetRef or targetRefs can be set "
                                         f"(this policy has {' and '.join(set_)})"))
        action = self.action or "ALLOW"
        if action == "CUSTOM":
            if not self.rules:
                out.append(Issue(("rules",), "a CUSTOM policy without rules never triggers; add an empty rule {} "
                                             "to apply it to every request"))
            elif self.provider is None or not self.provider.name:
                out.append(Issue(("provider",), "a CUSTOM policy needs provider.name (an extension provider of the "
                                                "mesh config)"))
            for i, rule in enumerate(self.rules or []):
                for j, frm in enumerate(rule.from_ or []):
                    for name in CUSTOM_UNSUPPORTED_SOURCE:
                        if frm.source is not None and getattr(frm.source, name):
                            alias = Source.model_fields[name].alias or name
                            out.append(Issue(("rules", i, "from", j, "source", alias),
                                             f"{alias} is not supported with action CUSTOM"))
                for k, cond in enumerate(rule.when or []):
                    if cond.key in ("source.namespace", "source.serviceAccount", "source.trustDomain",
                                    "source.principal") or \
                            cond.key.startswith("request.auth."):
                        out.append(Issue(("rules", i, "when", k, "key"), f"{cond.key} is not supported with "
                                                                         f"action CUSTOM"))
        elif self.provider is not None:
            out.append(Issue(("provider",), f"provider is only for action CUSTOM, not {action}"))
        if action == "DENY" and not self.rules:
            out.append(Issue(("rules",) if self.rules is not None else ("action",),
                             "a DENY policy without rules never triggers; add an empty rule {} to deny every request"))
        if action == "DENY":
            for i, rule in enumerate(self.rules or []):
                if _http_only(rule):
                    out.append(warning(("rules", i), "this DENY rule uses only HTTP attributes, so it denies all "
                                                     "traffic to TCP ports it applies to; name the ports to scope it"))
        return out


def _http_only(rule: Rule) -> bool:
    """Istio's check for DENY rules that deny every TCP connection."""
    sources = [f.source for f in rule.from_ or [] if f.source is not None]
    operations = [t.operation for t in rule.to or [] if t.operation is not None]
    tcp_from = any(s.principals is not None or s.not_principals is not None or s.namespaces is not None or
                   s.not_namespaces is not None or s.ip_blocks is not None or s.not_ip_blocks is not None or
                   s.remote_ip_blocks is not None or s.not_remote_ip_blocks is not None or
                   s.service_accounts is not None or s.not_service_accounts is not None for s in sources)
    tcp_to = any(o.ports is not None or o.not_ports is not None for o in operations)
    return bool((sources and not operations and not tcp_from) or (operations and not tcp_to))


# --- Istio's attribute rules (pkg/config/security) -----------------------------------------------

ATTRIBUTES = ("request.headers[NAME]", "source.ip", "remote.ip", "source.namespace", "source.serviceAccount",
              "source.principal", "source.trustDomain", "request.auth.principal", "request.auth.audiences",
              "request.auth.presenter", "request.auth.claims[NAME]", "destination.ip", "destination.port",
              "connection.sni", "experimental.envoy.filters.*[NAME]")
_MAP_KEY_PREFIXES = ("request.headers", "request.experimental.inline.headers", "request.auth.claims",
                     "experimental.envoy.filters.")
_PLAIN_KEYS = ("source.ip", "remote.ip", "source.namespace", "source.serviceAccount", "source.principal",
               "source.trustDomain",
               "request.auth.principal", "request.auth.audiences", "request.auth.presenter", "destination.ip",
               "destination.port", "connection.sni")


def attribute_key_problem(key: str) -> str | None:
    for prefix in _MAP_KEY_PREFIXES:
        if key.startswith(prefix):
            open_ = key.find("[")
            if key.endswith("]") and 0 < open_ < len(key) - 2:
                return None
            return f"bad key {key!r}: write it as {prefix.rstrip('.')}[name]"
    if key in _PLAIN_KEYS:
        return None
    if key == "destination.namespace":
        return "destination.namespace is replaced by the policy's own namespace (metadata.namespace)"
    if key.startswith("destination.labels"):
        return "destination.labels is replaced by the policy's selector"
    if key in ("destination.name", "destination.user"):
        return f"{key} is a deprecated attribute (v1alpha1 only)"
    return f"unknown attribute {key!r}; known keys are {', '.join(ATTRIBUTES)}"


def attribute_value_problem(key: str, value: str) -> str | None:
    if key in ("source.ip", "remote.ip", "destination.ip"):
        return ip_block_problem(value)
    if key == "destination.port":
        return port_value_problem(value)
    if key == "source.serviceAccount":
        return service_account_problem(value)
    if key == "source.trustDomain":
        return wildcard_value_problem(value)
    return None


def wildcard_value_problem(value: str) -> str | None:
    """Istio's ``CheckWildcardValues``: exact, prefix ``abc*``, suffix ``*abc`` or presence ``*``."""
    if value.count("*") > 1:
        return f"{value!r}: at most one wildcard '*' is allowed"
    if "*" in value[1:-1]:
        return f"{value!r}: a wildcard '*' is allowed only at the start or the end"
    return None


def ip_block_problem(value: str) -> str | None:
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address or CIDR range (like 10.0.0.1 or 10.0.0.0/16)"
    return None


def port_value_problem(value: str) -> str | None:
    if not value.isdigit() or int(value) > 65535:
        return f"port {value!r} must be a number 0-65535"
    return None


def service_account_problem(value: str) -> str | None:
    if "*" in value:
        return f"serviceAccounts take no wildcards ({value!r})"
    if value.count("/") > 1 or value.startswith("/") or value.endswith("/"):
        return f"{value!r}: write a service account as 'name' or 'namespace/name'"
    if len(value) > 320:
        return "a service account cannot exceed 320 characters"
    return None


_LITERAL = re.compile(r"^[a-zA-Z0-9-._~%!$&'()+,;:@=]+$")


def path_template_problem(path: str) -> str | None:
    """Istio's ``CheckValidPathTemplate``: ``{*}`` and a final ``{**}`` only."""
    template = "{*}" in path or "{**}" in path
    any_seen = False
    for glob in path.strip("/").split("/"):
        if glob in ("{*}", "{**}"):
            if any_seen:
                return f"invalid path {path!r}: {{**}} must be the last operator"
            any_seen = glob == "{**}"
            continue
        if "{" in glob or "}" in glob:
            return f"invalid path {path!r}: only {{*}} and {{**}} templates are supported"
        if template and glob and not _LITERAL.match(glob):
            return f"invalid path {path!r}: segment {glob!r} has characters a path template cannot have"
    return None


def _empty_value_issues(values: Sequence[str] | None, path: Path) -> list[Issue]:
    return [Issue(path + (i,), "values must not be empty strings") for i, v in enumerate(values or []) if v == ""]


def _match_form_issues(value: str, path: Path) -> list[Issue]:
    """Istio matches these strings exactly, by prefix ``abc*``, suffix ``*abc`` or presence ``*``."""
    if "*" in value[1:-1]:
        return [warning(path, f"{value!r}: '*' is a wildcard only at the start or the end; in the middle it is "
                              f"matched literally")]
    return []
