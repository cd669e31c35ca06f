"""Istio's own analyzer test cases for the codes exitgate claims: the testGrid of Istio's
pkg/config/analysis/analyzers/analyzers_test.go, one input file per case in
``istio_analyzer_cases/`` and Istio's expected (code, resource) pairs in its ``expected.yaml``.

Each case is run as Istio's test runs it: the case's files plus what Istio adds to every case
(``default-ingress.yaml``: the default ingress gateway of ``AddDefaultResources``), in a mesh
with no other proxies (``ISTIO_TEST_MESH``: the Kubernetes objects of the files are the
cluster; exitgate's own default mesh, an egress gateway and ``sleep``, plays the part of Istio's
default resources when ``exitgate analyze`` reads files), and only the exitgate analyzers that
implement the Istio analyzer the case names. Restricted to those analyzers' codes, exitgate must
report exactly Istio's set of (code, resource). (Istio's test leaves a document without a
namespace in no namespace, exitgate's loader puts it in ``default``; no case here mixes the two
where it would matter.)

A case marked ``excluded`` does not load in exitgate (its YAML breaks a rule of Kubernetes or
Istio validation that exitgate enforces, or uses a kind exitgate does not serve):
``test_excluded_cases_still_do_not_load`` keeps that claim true. A case marked ``differs`` is
one where exitgate deliberately gives the code another meaning; it is skipped with the reason.
A case with ``adapted_from`` is an excluded case with the least change that makes it load,
and Istio's expectations for the original (see ``adaptation``).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from exitgate.analyze import (
    analyze,
    authz_namespaces,
    authz_workloads,
    conflicting_gateways,
    credential_ref,
    destination_host,
    destination_rule_host,
    destination_subset,
    gateway_credential,
    gateway_port,
    gateway_ref,
    gateway_selector,
    mesh_host_conflict,
    port_selector,
    serviceentry_protocols,
    sidecar_default_selector,
    sidecar_selector,
    sidecar_selector_conflict,
    skip_verify_destination,
    skip_verify_port,
    subset_selects,
    vs_host_in_gateway,
)
from exitgate.analyze.analyzer import Analyzer
from exitgate.api.loader import load_paths
from exitgate.mesh import MeshConfig

CASES = Path(__file__).parent / "istio_analyzer_cases"
DEFAULTS = CASES / "default-ingress.yaml"
EXPECTED: list[dict[str, Any]] = yaml.safe_load((CASES / "expected.yaml").read_text(encoding="utf-8"))["cases"]
# Istio's tests read certificates at the time they run; the testdata's valid ones cover this date.
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
# No gateway or workload but what the files (and default-ingress.yaml) declare.
ISTIO_TEST_MESH = MeshConfig(gateways=[], workloads=[])

# Istio's analyzer -> the exitgate analyzers that implement its checks.
IMPLEMENTED_BY: dict[str, tuple[Analyzer, ...]] = {
    "gateway.IngressGatewayPortAnalyzer": (gateway_selector.ANALYZER, gateway_port.ANALYZER),
    "gateway.SecretAnalyzer": (gateway_selector.ANALYZER, credential_ref.ANALYZER, gateway_credential.ANALYZER),
    "gateway.ConflictingGatewayAnalyzer": (conflicting_gateways.ANALYZER,),
    "sidecar.SelectorAnalyzer": (sidecar_selector.ANALYZER, sidecar_selector_conflict.ANALYZER,
                                 sidecar_default_selector.ANALYZER),
    "virtualservice.ConflictingMeshGatewayHostsAnalyzer": (mesh_host_conflict.ANALYZER,),
    "virtualservice.DestinationHostAnalyzer": (destination_host.ANALYZER, port_selector.ANALYZER),
    "virtualservice.DestinationRuleAnalyzer": (destination_subset.ANALYZER,),
    "virtualservice.GatewayAnalyzer": (gateway_ref.ANALYZER, vs_host_in_gateway.ANALYZER),
    "authz.AuthorizationPoliciesAnalyzer": (authz_workloads.ANALYZER, authz_namespaces.ANALYZER),
    "destinationrule.CaCertificateAnalyzer": (skip_verify_destination.ANALYZER, skip_verify_port.ANALYZER),
    "destinationrule.PodNotSelectedAnalyzer": (subset_selects.ANALYZER, destination_rule_host.ANALYZER),
    "serviceentry.ConflictingServiceEntryProtocolAnalyzer": (serviceentry_protocols.ANALYZER,),
    # Telemetry is not a kind exitgate serves: no analyzer (the case is excluded).
    "telemetry.SelectorAnalyzer": (),
}

_FRIENDLY = re.compile(r"^(\w+) (?:([^/ ]+)/)?([^/ ]+)$")


def exitgate_ref(istio: str) -> str:
    """Istio's friendly name ("Kind ns/name", or "Kind name" for a document without a namespace)
    as exitgate's ``Diagnostic.resource`` ("Kind ns/name"; the loader's default namespace)."""
    m = _FRIENDLY.match(istio)
    assert m, istio
    kind, ns, name = m.groups()
    return f"{kind} {ns or 'default'}/{name}"


def _id(case: dict[str, Any]) -> str:
    return str(case["name"])


def load(case: dict[str, Any]) -> tuple[list[Any], list[str], list[str]]:
    """As ``exitgate analyze`` loads files: the resources, the errors, and the documents dropped
    (errors without a resource, which analysis does not see)."""
    loaded = load_paths([CASES / case["file"], DEFAULTS], keep_unsupported=True, keep_invalid=True)
    refs = {r.ref for r in loaded.resources}
    errors = [str(d) for d in loaded.diagnostics if d.is_error]
    dropped = sorted({str(d.resource) for d in loaded.diagnostics if d.is_error and d.resource not in refs})
    return loaded.resources, errors, dropped


RUN = [c for c in EXPECTED if "excluded" not in c]
EXCLUDED = [c for c in EXPECTED if "excluded" in c]


def test_every_case_names_a_known_analyzer_and_file() -> None:
    assert len({c["name"] for c in EXPECTED}) == len(EXPECTED)
    for c in EXPECTED:
        assert c["analyzer"] in IMPLEMENTED_BY, c["name"]
        assert (CASES / c["file"]).is_file(), c["file"]
        if "excluded" not in c:
            codes = {a.code for a in IMPLEMENTED_BY[c["analyzer"]]}
            assert {code for code, _ in c.get("expected") or []} <= codes, c["name"]


# One of Istio's test certificates has a serial number that is not positive; cryptography warns.
@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize("case", RUN, ids=_id)
def test_istio_case(case: dict[str, Any]) -> None:
    if "differs" in case:
        pytest.skip(str(case["differs"]))
    resources, errors, dropped = load(case)
    assert dropped == []
    # Only a case that says why may have validation errors (reported, and analyzed anyway).
    assert ("invalid" in case) == bool(errors), errors
    analyzers = IMPLEMENTED_BY[case["analyzer"]]
    codes = {a.code for a in analyzers}
    diags = analyze(resources, ISTIO_TEST_MESH, now=NOW, analyzers=analyzers)
    got = sorted({(d.code, d.resource or "") for d in diags if d.code in codes})
    want = sorted({(code, exitgate_ref(r)) for code, r in case.get("expected") or []})
    assert got == want, "\n".join(str(d) for d in diags if d.code in codes)


@pytest.mark.parametrize("case", EXCLUDED, ids=_id)
def test_excluded_cases_still_do_not_load(case: dict[str, Any]) -> None:
    """An excluded case is left out because a document does not load; once all do, run it instead."""
    _, _, dropped = load(case)
    assert dropped, f"{case['file']} loads now: remove 'excluded' from its case in expected.yaml"
