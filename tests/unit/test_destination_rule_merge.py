"""Istio's merging of DestinationRules for one host in one namespace (mergeDestinationRule)."""

from __future__ import annotations

from typing import Any

from exitgate.api.loader import load_document
from exitgate.api.resources import Resource
from exitgate.mesh import MeshConfig
from exitgate.translate.destination_rules import merge
from exitgate.translate.snapshot import Snapshot

HOST = "istio-egressgateway.istio-system.svc.cluster.local"


def dr(name: str, subsets: list[str], lb: str | None = None, export_to: list[str] | None = None,
       namespace: str = "default") -> Resource:
    spec: dict[str, Any] = {"host": HOST, "subsets": [{"name": s} for s in subsets]}
    if lb:
        spec["trafficPolicy"] = {"loadBalancer": {"simple": lb}}
    if export_to:
        spec["exportTo"] = export_to
    r, diags = load_document({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                              "metadata": {"name": name, "namespace": namespace}, "spec": spec}, "t.yaml")
    assert r is not None, diags
    return r


def test_subsets_concatenate_and_the_first_policy_wins() -> None:
    [one] = merge([dr("a", ["cnn"]), dr("b", ["httpbin", "cnn"], lb="RANDOM"), dr("c", [], lb="LEAST_REQUEST")])
    assert one.name == "a" and [s.name for s in one.spec.subsets or []] == ["cnn", "httpbin"]
    # The first rule has no top-level policy: the first one given is taken, later ones are not.
    assert one.spec.traffic_policy is not None and one.spec.traffic_policy.load_balancer is not None
    assert one.spec.traffic_policy.load_balancer.simple == "RANDOM"


def test_only_rules_with_the_same_export_merge() -> None:
    wide, narrow = dr("a", ["x"]), dr("b", ["y"], export_to=["."])
    rules = merge([wide, narrow])
    assert [r.name for r in rules] == ["a", "b"]  # narrower: a rule of its own
    assert [s.name for s in rules[0].spec.subsets or []] == ["x"]
    # A rule exported to more namespaces than an earlier one merges into it and stays on its own
    # too (Istio compares the namespace sets as given: "*" is not a superset of "default").
    rules = merge([dr("a", ["x"], export_to=["."]), dr("b", ["y"], export_to=[".", "other"])])
    assert [(r.name, [s.name for s in r.spec.subsets or []]) for r in rules] == [("a", ["x", "y"]), ("b", ["y"])]
    assert [r.name for r in merge([dr("a", ["x"], export_to=["."]), dr("b", ["y"])])] == ["a", "b"]


def test_the_snapshot_answers_with_the_merged_rule() -> None:
    snap = Snapshot([dr("egressgateway-for-cnn", ["cnn"]), dr("egressgateway-for-httpbin", ["httpbin"])], MeshConfig())
    found = snap.destination_rule(HOST, "default", "istio-system")
    assert found is not None and [s.name for s in found.spec.subsets or []] == ["cnn", "httpbin"]
    # Rules of another namespace are not merged with these.
    other = Snapshot([dr("a", ["cnn"]), dr("b", ["httpbin"], namespace="other")], MeshConfig())
    found = other.destination_rule(HOST, "default", "istio-system")
    assert found is not None and [s.name for s in found.spec.subsets or []] == ["cnn"]
