"""AuthorizationPolicy → the gateway's RBAC filters, as Istio builds them
(``pilot/pkg/security/authz/builder/builder.go``, ``model/model.go``).

Pure. Which policies apply (Istio's ``ListAuthorizationPolicies``): the proxy's namespace and the
root namespace, a selector's labels all on the proxy (no selector: every workload), never a
``targetRef`` policy (Istio ignores those for a gateway that is not a Gateway API one). Then one
filter per action, in Istio's order: AUDIT (Envoy LOG), DENY, ALLOW; every rule of every policy
of that action is one named RBAC policy (``ns[NS]-policy[NAME]-rule[I]``). A policy without rules
is a policy that never matches: alone as ALLOW, it refuses everything. ``istio.io/dry-run``
policies go to the filter's shadow rules, counted and never enforced.

What exitgate cannot express fails closed, the way Istio treats a rule it cannot generate: an
ALLOW rule is dropped (it matches nothing); a DENY or AUDIT rule loses the condition (it matches
more). A CUSTOM policy denies what it would have sent to its provider, Istio's behaviour for a
provider it cannot use.

With ``tcp=True`` the same policies become the filters of TLS passthrough chains, Envoy's RBAC
*network* filter (Istio's ``BuildTCP``, ``forTCP``). The attributes a connection has keep their
meaning: ``connection.sni`` (requested_server_name), ``ports`` / ``destination.port``,
``destination.ip``, ``ipBlocks`` / ``source.ip`` (direct_remote_ip), ``remoteIpBlocks`` /
``remote.ip``, and the peer identities (``principals``, ``namespaces``, ``serviceAccounts``,
``source.*``; a passthrough connection carries the client's own TLS, no peer certificate, so
these never match). The HTTP-only ones (``hosts``, ``methods``, ``paths``,
``requestPrincipals``, ``request.headers[..]``, ``request.auth.*``) are Istio's errors
``"X is HTTP only"``, treated as above: an ALLOW rule using one is left out, a DENY or AUDIT rule
keeps only its other conditions (a DENY on ``paths`` alone refuses every connection).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from exitgate import ir, names
from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.resources import Resource
from exitgate.api.security import AuthorizationPolicySpec, Rule
from exitgate.translate import authz_match as m
from exitgate.translate.authz_match import Attribute, Untranslatable
from exitgate.translate.snapshot import labels_match

DRY_RUN_ANNOTATION = "istio.io/dry-run"
# Go's strconv.ParseBool, which Istio reads the annotation with.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")

# A policy with no rules (Istio's rbacPolicyMatchNever).
MATCH_NEVER = ((ir.MatchNot(ir.MatchAny()),), (ir.MatchNot(ir.MatchAny()),))


@dataclass(frozen=True)
class _Condition:
    attribute: Attribute
    field: str  # "spec.rules[0].from[0].source.principals"
    values: tuple[str, ...]
    not_values: tuple[str, ...]


class _DropRule(Exception):
    """An ALLOW rule with a part exitgate cannot express: the rule matches nothing."""


def gateway_rbac(policies: Sequence[Resource], namespace: str, labels: Mapping[str, str], root_namespace: str,
                 trust_domain: str, *, port_stripped: bool = True, tcp: bool = False,
                 ) -> tuple[tuple[ir.RbacFilter, ...], list[Diagnostic]]:
    """The RBAC filters of a gateway proxy in ``namespace`` with ``labels``, from all the
    configuration's AuthorizationPolicies. ``port_stripped``: the listener removes the port from
    the authority before filters run (exitgate's gateways do), which changes what ``hosts`` with
    a port can mean. ``tcp``: the filters of TLS passthrough chains (the RBAC network filter),
    where HTTP-only attributes fail closed (see the module docstring)."""
    diags: list[Diagnostic] = []
    by_action: dict[str, list[Resource[AuthorizationPolicySpec]]] = {"CUSTOM": [], "AUDIT": [], "DENY": [], "ALLOW": []}
    for res in sorted(policies, key=lambda r: (r.namespace != root_namespace, r.namespace, r.name)):
        spec = res.spec
        if res.kind != "AuthorizationPolicy" or not isinstance(spec, AuthorizationPolicySpec):
            continue
        if _applies(res, spec, namespace, labels, root_namespace, diags):
            by_action[spec.action or "ALLOW"].append(cast("Resource[AuthorizationPolicySpec]", res))
    build = _Builder(trust_domain, port_stripped, diags, tcp)
    filters: list[ir.RbacFilter] = []
    if by_action["CUSTOM"]:
        filters.append(build.custom(by_action["CUSTOM"]))
    for action, rbac_action in (("AUDIT", ir.RbacAction.LOG), ("DENY", ir.RbacAction.DENY),
                                ("ALLOW", ir.RbacAction.ALLOW)):
        if by_action[action]:
            filters.append(build.filter(rbac_action, by_action[action]))
    return tuple(filters), diags


def policy_applies(policy_ns: str, spec: AuthorizationPolicySpec, namespace: str, labels: Mapping[str, str],
                   root_namespace: str) -> bool:
    """Istio's rule for which proxies a policy applies to: one in the policy's namespace, or any
    if the policy is in the root namespace; with a selector, only if all its labels match. (The
    analyzers use it too.) targetRef policies are left to the caller."""
    if policy_ns not in (namespace, root_namespace):
        return False
    selector = spec.selector.match_labels if spec.selector is not None else None
    return labels_match(selector or {}, labels)


def policies_on_sidecar(policies: Sequence[Resource[AuthorizationPolicySpec]], namespace: str,
                        labels: Mapping[str, str], root_namespace: str) -> list[Resource[AuthorizationPolicySpec]]:
    """The policies that select a workload's sidecar, which carries only outbound traffic here
    and so enforces none of them. A mesh-wide policy without a selector is meant for every proxy
    and is left out; so are targetRef ones (they name Services or Gateways)."""
    return [ap for ap in policies
            if not (ap.namespace == root_namespace and ap.spec.selector is None)
            and ap.spec.target_ref is None and not ap.spec.target_refs
            and policy_applies(ap.namespace, ap.spec, namespace, labels, root_namespace)]


def _applies(res: Resource, spec: AuthorizationPolicySpec, namespace: str, labels: Mapping[str, str],
             root_namespace: str, diags: list[Diagnostic]) -> bool:
    if not policy_applies(res.namespace, spec, namespace, labels, root_namespace):
        return False
    if spec.target_ref is not None or spec.target_refs:
        field = "spec.targetRef" if spec.target_ref is not None else "spec.targetRefs"
        diags.append(Diagnostic(dx.UNSUPPORTED, Severity.WARNING,
                                "targetRef policies are not supported by exitgate yet; like Istio for a gateway that "
                                "is not a Gateway API one, this policy is not applied", resource=res.ref, field=field))
        return False
    return True


def is_dry_run(res: Resource) -> bool:
    meta = res.raw.get("metadata") if isinstance(res.raw, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    value = annotations.get(DRY_RUN_ANNOTATION) if isinstance(annotations, dict) else None
    return str(value) in _TRUE if value is not None else False


@dataclass
class _Builder:
    trust_domain: str
    port_stripped: bool
    diags: list[Diagnostic]
    tcp: bool = False  # the RBAC network filter of TLS passthrough (Istio's forTCP)

    def filter(self, action: ir.RbacAction, policies: Sequence[Resource[AuthorizationPolicySpec]]) -> ir.RbacFilter:
        enforced: list[ir.RbacPolicy] | None = None
        shadow: list[ir.RbacPolicy] | None = None
        for res in policies:
            if is_dry_run(res):
                shadow = (shadow or []) + self.policy(res, action)
            else:
                enforced = (enforced or []) + self.policy(res, action)
        # Envoy evaluates a filter's policies in name order (a std::map): keep that order here.
        return ir.RbacFilter(action, _sorted(enforced), _sorted(shadow))

    def custom(self, policies: Sequence[Resource[AuthorizationPolicySpec]]) -> ir.RbacFilter:
        out: list[ir.RbacPolicy] = []
        for res in policies:
            provider = res.spec.provider.name if res.spec.provider is not None and res.spec.provider.name else None
            self.diags.append(Diagnostic(
                dx.UNSUPPORTED, Severity.WARNING,
                f"action CUSTOM is not supported by exitgate yet: the requests this policy would send to "
                f"provider {provider or '(none)'} are denied, as Istio does for a provider it cannot use",
                resource=res.ref, field="spec.action"))
            out += self.policy(res, ir.RbacAction.DENY, custom_provider=provider or "none")
        return ir.RbacFilter(ir.RbacAction.DENY, _sorted(out))

    def policy(self, res: Resource[AuthorizationPolicySpec], action: ir.RbacAction,
               custom_provider: str | None = None) -> list[ir.RbacPolicy]:
        rules = res.spec.rules or []
        if not rules:
            name = names.rbac_policy_name(res.namespace, res.name, 0, custom_provider)
            return [ir.RbacPolicy(name, *MATCH_NEVER)]
        out = []
        for i, rule in enumerate(rules):
            name = names.rbac_policy_name(res.namespace, res.name, i, custom_provider)
            try:
                permissions, principals = self.rule(res, i, rule, action)
            except _DropRule:
                continue
            out.append(ir.RbacPolicy(name, permissions, principals))
        return out

    def rule(self, res: Resource[AuthorizationPolicySpec], i: int, rule: Rule, action: ir.RbacAction,
             ) -> tuple[tuple[ir.RbacMatch, ...], tuple[ir.RbacMatch, ...]]:
        """Istio's ``model.New``: ``when`` conditions join every ``from`` (principals) or every
        ``to`` (permissions); the fields of one source or operation come first, in Istio's order."""
        at = f"spec.rules[{i}]"
        base_permission: list[_Condition] = []
        base_principal: list[_Condition] = []
        for k, cond in enumerate(rule.when or []):
            attr = m.when_attribute(cond.key, res.namespace, self.tcp)
            values, not_values = tuple(cond.values or ()), tuple(cond.not_values or ())
            if cond.key == "source.principal":
                values, not_values = self._migrate(values), self._migrate(not_values)
            target = base_permission if attr.permission else base_principal
            target.append(_Condition(attr, f"{at}.when[{k}]", values, not_values))

        principal_sets: list[list[_Condition]] = []
        for j, frm in enumerate(rule.from_ or []):
            s, f = frm.source, f"{at}.from[{j}].source"
            conds: list[_Condition] = []
            if s is not None:
                fields: list[tuple[str, str, m.Generator, Sequence[str] | None, Sequence[str] | None]] = [
                    ("principals", "notPrincipals", m.principal, self._migrate(s.principals),
                     self._migrate(s.not_principals)),
                    ("requestPrincipals", "notRequestPrincipals",
                     m.http_only("requestPrincipals") if self.tcp
                     else m.unsupported("requestPrincipals (needs RequestAuthentication)"),
                     s.request_principals, s.not_request_principals),
                    ("serviceAccounts", "notServiceAccounts", m.service_account(res.namespace),
                     s.service_accounts, s.not_service_accounts),
                    ("namespaces", "notNamespaces", m.namespace, s.namespaces, s.not_namespaces),
                    ("remoteIpBlocks", "notRemoteIpBlocks", m.remote_ip, s.remote_ip_blocks, s.not_remote_ip_blocks),
                    ("ipBlocks", "notIpBlocks", m.source_ip, s.ip_blocks, s.not_ip_blocks),
                    # The loader refuses them (EG0006); should one get here, it fails closed.
                    ("trustDomains", "notTrustDomains", m.unsupported("trustDomains"), s.trust_domains,
                     s.not_trust_domains),
                ]
                for key, not_key, gen, vals, not_vals in fields:
                    if vals or not_vals:
                        field = f"{f}.{key if vals else not_key}"
                        conds.append(_Condition(Attribute(key, False, gen), field, tuple(vals or ()),
                                                tuple(not_vals or ())))
            principal_sets.append(conds + base_principal)
        if not rule.from_:
            principal_sets.append(base_principal)

        permission_sets: list[list[_Condition]] = []
        for j, to in enumerate(rule.to or []):
            o, f = to.operation, f"{at}.to[{j}].operation"
            conds = []
            if o is not None:
                def host(value: str) -> ir.RbacMatch:
                    return m.host(value, self.port_stripped)
                operation: tuple[tuple[str, m.Generator, Sequence[str] | None, Sequence[str] | None], ...] = (
                    ("hosts", m.http_only("hosts") if self.tcp else host, o.hosts, o.not_hosts),
                    ("methods", m.http_only("methods") if self.tcp else m.method, o.methods, o.not_methods),
                    ("paths", m.http_only("paths") if self.tcp else m.path, o.paths, o.not_paths),
                    ("ports", m.port, o.ports, o.not_ports))
                for key, gen, vals, not_vals in operation:
                    if vals or not_vals:
                        conds.append(_Condition(Attribute(key, True, gen), f"{f}.{key}", tuple(vals or ()),
                                                tuple(not_vals or ())))
            permission_sets.append(conds + base_permission)
        if not rule.to:
            permission_sets.append(base_permission)

        return (tuple(self._all(res, c, action) for c in permission_sets),
                tuple(self._all(res, c, action) for c in principal_sets))

    def _all(self, res: Resource, conditions: Sequence[_Condition], action: ir.RbacAction) -> ir.RbacMatch:
        """Every condition (Istio's generatePermission / generatePrincipal): each as the OR of its
        values, and NOT the OR of its notValues; none at all matches everything."""
        items: list[ir.RbacMatch] = []
        for cond in conditions:
            positive: list[ir.RbacMatch] = []
            complete = True
            for value in cond.values:
                try:
                    positive.append(cond.attribute.generate(value))
                except Untranslatable as e:
                    self._report(res, cond, e, action)
                    if e.wider is None:
                        complete = False  # DENY/AUDIT: without this condition the rule matches more
                    else:
                        positive.append(e.wider)
            if positive and complete:
                items.append(ir.MatchOneOf(tuple(positive)))
            negative: list[ir.RbacMatch] = []
            for value in cond.not_values:
                try:
                    negative.append(cond.attribute.generate(value))
                except Untranslatable as e:
                    # DENY/AUDIT: a shorter exclusion list excludes less, so the rule matches more.
                    self._report(res, cond, e, action)
            if negative:
                items.append(ir.MatchNot(ir.MatchOneOf(tuple(negative))))
        return ir.MatchAll(tuple(items) or (ir.MatchAny(),))

    def _report(self, res: Resource, cond: _Condition, e: Untranslatable, action: ir.RbacAction) -> None:
        what = "connections" if self.tcp else "requests"
        where = "on TLS passthrough (RBAC network filter), " if self.tcp else ""
        if action is ir.RbacAction.ALLOW:
            effect = f"{where}this ALLOW rule is left out, so it allows nothing"
        else:
            effect = f"{where}this {'AUDIT' if action is ir.RbacAction.LOG else 'DENY'} rule is applied without it, " \
                     f"so it matches more {what}"
        d = Diagnostic(dx.UNSUPPORTED, Severity.WARNING, f"{e.reason}; {effect}", resource=res.ref, field=cond.field)
        if d not in self.diags:
            self.diags.append(d)
        if action is ir.RbacAction.ALLOW:
            raise _DropRule

    def _migrate(self, values: Sequence[str] | None) -> tuple[str, ...]:
        return tuple(m.migrate_trust_domain(v, self.trust_domain) for v in values or ())


def _sorted(policies: list[ir.RbacPolicy] | None) -> tuple[ir.RbacPolicy, ...] | None:
    return None if policies is None else tuple(sorted(policies, key=lambda p: p.name))
