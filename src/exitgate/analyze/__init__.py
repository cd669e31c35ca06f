"""Cross-resource checks with Istio's analyzer codes (``IST0xxx``) where the meaning is the same,
and exitgate's own (``EG01xx``) for egress and TLS-origination pitfalls.

``analyze(resources, mesh, now=...)`` runs every analyzer of ``ANALYZERS`` (one check per
module) and returns their diagnostics sorted by file and line. Analyzers are pure functions of
an analysis ``Context``; the clock is passed in, and exact lines come from an optional
``locate`` callable (``analyze.locate.FileLocator`` reads the files).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from exitgate.analyze import (
    authz_namespaces,
    authz_on_sidecar,
    authz_peer_identity,
    authz_workloads,
    certificate_expiry,
    client_credential,
    conflicting_gateways,
    credential_namespace,
    credential_ref,
    destination_host,
    destination_rule_host,
    destination_subset,
    gateway_credential,
    gateway_port,
    gateway_ref,
    gateway_selector,
    gateway_server_missing,
    gateway_server_unbound,
    mesh_host_conflict,
    passthrough_origination,
    plaintext_to_tls,
    port_selector,
    serviceentry_protocols,
    sidecar_default_selector,
    sidecar_selector,
    sidecar_selector_conflict,
    skip_verify_any,
    skip_verify_destination,
    skip_verify_port,
    subset_selects,
    subset_visibility,
    tls_to_plaintext,
    vs_host_in_gateway,
)
from exitgate.analyze.analyzer import Analyzer
from exitgate.api.loader import field_path
from exitgate.analyze.model import Context, Finding, Path
from exitgate.api.diagnostics import Diagnostic
from exitgate.api.resources import Resource
from exitgate.inventory import inventory
from exitgate.mesh import MeshConfig

__all__ = ["ANALYZERS", "Analyzer", "Context", "Finding", "Locator", "analyze", "to_diagnostic"]

# (file, document line, field path) -> line
Locator = Callable[[str, int, Path], int]

ANALYZERS: tuple[Analyzer, ...] = (
    gateway_ref.ANALYZER,
    destination_host.ANALYZER,
    destination_subset.ANALYZER,
    gateway_selector.ANALYZER,
    credential_ref.ANALYZER,
    mesh_host_conflict.ANALYZER,
    sidecar_selector_conflict.ANALYZER,
    sidecar_default_selector.ANALYZER,
    authz_workloads.ANALYZER,
    authz_namespaces.ANALYZER,
    port_selector.ANALYZER,
    skip_verify_destination.ANALYZER,
    skip_verify_port.ANALYZER,
    skip_verify_any.ANALYZER,
    vs_host_in_gateway.ANALYZER,
    conflicting_gateways.ANALYZER,
    gateway_credential.ANALYZER,
    gateway_port.ANALYZER,
    subset_selects.ANALYZER,
    destination_rule_host.ANALYZER,
    serviceentry_protocols.ANALYZER,
    passthrough_origination.ANALYZER,
    subset_visibility.ANALYZER,
    credential_namespace.ANALYZER,
    tls_to_plaintext.ANALYZER,
    plaintext_to_tls.ANALYZER,
    gateway_server_missing.ANALYZER,
    gateway_server_unbound.ANALYZER,
    certificate_expiry.ANALYZER,
    client_credential.ANALYZER,
    sidecar_selector.ANALYZER,
    authz_peer_identity.ANALYZER,
    authz_on_sidecar.ANALYZER,
)


def to_diagnostic(finding: Finding, locate: Locator | None = None) -> Diagnostic:
    r = finding.resource
    file = r.source.file if r is not None and r.source is not None else None
    line = r.source.line if r is not None and r.source is not None else None
    if file is not None and line is not None and locate is not None:
        line = locate(file, line, finding.path)
    return Diagnostic(finding.code, finding.severity, finding.message, file=file, line=line,
                      resource=r.ref if r is not None else None, field=field_path(finding.path) or None)


def _sort_key(d: Diagnostic) -> tuple[str, int, str, str, str, str]:
    # The message too: two findings of one place must not come out in the analyzers' own order.
    return (d.file or "", d.line or 0, d.code, d.resource or "", d.field or "", d.message)


def analyze(resources: Sequence[Resource], mesh: MeshConfig, *, now: datetime,
            analyzers: Sequence[Analyzer] = ANALYZERS, locate: Locator | None = None) -> list[Diagnostic]:
    """Every analyzer's diagnostics for ``resources`` in ``mesh`` at time ``now``, without
    duplicates, sorted by file, line and code. The workloads and gateways are the mesh's with
    what the resources' Kubernetes objects declare (``inventory``), as the control plane runs them."""
    found = inventory(mesh, resources)
    ctx = Context(resources, found.mesh, now)
    out: dict[Diagnostic, None] = dict.fromkeys(found.diagnostics)
    for analyzer in analyzers:
        for finding in analyzer.check(ctx):
            out.setdefault(to_diagnostic(finding, locate))
    return sorted(out, key=_sort_key)
