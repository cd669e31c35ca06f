"""names.py, RBAC policy names: Istio's ``ns[NS]-policy[NAME]-rule[N]`` (and its bad-CUSTOM-action
form) round-trip; anything else is refused with ValueError."""

from __future__ import annotations

import pytest

from exitgate import names
from exitgate.names import RbacPolicyName

NAMES = [
    ("istio-system", "test", 0, None),
    ("foo", "httpbin-1", 12, None),
    ("default", "allow.cnn.com", 3, None),
    ("a", "b", 999999, None),
    ("foo", "httpbin-1", 0, "default"),
    ("foo", "ext", 2, "my-ext.authz_v2"),
]


@pytest.mark.parametrize(("namespace", "name", "rule", "provider"), NAMES)
def test_rbac_policy_name_round_trips(namespace: str, name: str, rule: int, provider: str | None) -> None:
    built = names.rbac_policy_name(namespace, name, rule, provider)
    parsed = names.parse_rbac_policy_name(built)
    assert parsed == RbacPolicyName(namespace, name, rule, provider)
    assert str(parsed) == built
    assert names.parse_rbac_denied_details(names.rbac_denied_details(built)) == parsed


def test_rbac_policy_name_is_istios_format() -> None:
    assert names.rbac_policy_name("istio-system", "test", 0) == "ns[istio-system]-policy[test]-rule[0]"
    assert names.rbac_policy_name("foo", "httpbin-1", 0, "default") == \
        "istio-ext-authz-default-ns[foo]-policy[httpbin-1]-rule[0]-deny-due-to-bad-CUSTOM-action"
    assert names.rbac_denied_details("ns[istio-system]-policy[test]-rule[0]") == \
        "rbac_access_denied_matched_policy[ns[istio-system]-policy[test]-rule[0]]"


@pytest.mark.parametrize("bad", [
    "", "ns[foo]", "ns[foo]-policy[bar]", "ns[foo]-policy[bar]-rule[]", "ns[foo]-policy[bar]-rule[01]",
    "ns[foo]-policy[bar]-rule[-1]", "ns[foo]-policy[bar]-rule[1]x", "xns[foo]-policy[bar]-rule[1]",
    "ns[Foo]-policy[bar]-rule[1]", "ns[foo]-policy[b[a]r]-rule[1]", "ns[]-policy[bar]-rule[1]",
    "ns[foo]-policy[]-rule[1]", "ns[foo]-policy[bar]-rule[1234567]", "ns[foo.bar]-policy[bar]-rule[1]",
    "istio-ext-authz-ns[foo]-policy[bar]-rule[0]", "istio-ext-authz-p-ns[foo]-policy[bar]-rule[0]",
    "istio-ext-authz--ns[foo]-policy[bar]-rule[0]-deny-due-to-bad-CUSTOM-action",
])
def test_parse_rbac_policy_name_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_rbac_policy_name(bad)


@pytest.mark.parametrize(("namespace", "name", "rule"), [("Foo", "x", 0), ("foo", "a[b]", 0), ("foo", "x", -1),
                                                         ("", "x", 0), ("foo", "", 0)])
def test_rbac_policy_name_refuses_what_would_not_parse(namespace: str, name: str, rule: int) -> None:
    with pytest.raises(ValueError):
        names.rbac_policy_name(namespace, name, rule)


def test_denied_details_of_allow_refusal_names_no_policy() -> None:
    assert names.parse_rbac_denied_details("rbac_access_denied_matched_policy[none]") is None
    assert names.parse_rbac_denied_details("via_upstream") is None
