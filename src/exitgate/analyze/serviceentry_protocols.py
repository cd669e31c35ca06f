"""IST0177 ConflictingServiceEntryProtocol: ServiceEntries visible in the same scope declare the
same host and port with different protocols (Istio merges them into one service; which protocol
wins is undefined). Istio 1.30's analyzer; the message wording is exitgate's."""

from __future__ import annotations

from collections.abc import Iterator

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.model import Context, Finding
from exitgate.api.diagnostics import Severity
from exitgate.api.networking import ServiceEntrySpec
from exitgate.api.resources import Resource

CODE = "IST0177"


def _scopes(se: Resource[ServiceEntrySpec]) -> set[str]:
    export = se.spec.export_to
    if not export or "*" in export:
        return {"*"}
    return {se.namespace if e == "." else e for e in export}


def check(ctx: Context) -> Iterator[Finding]:
    index: dict[tuple[str, str, int], list[tuple[str, Resource[ServiceEntrySpec], int]]] = {}
    for se in ctx.service_entries:
        for scope in _scopes(se):
            for host in se.spec.hosts:
                for k, p in enumerate(se.spec.ports or []):
                    index.setdefault((scope, host, p.number), []).append(((p.protocol or "").upper(), se, k))
    reported: set[tuple[str, str]] = set()
    for (scope, host, port), entries in sorted(index.items()):
        if scope != "*":
            entries = entries + index.get(("*", host, port), [])
        protocols = sorted({proto for proto, _, _ in entries})
        if len(protocols) < 2:
            continue
        names = sorted({f"{se.namespace}/{se.name}" for _, se, _ in entries})
        for proto, se, k in entries:
            if (se.namespace, se.name) in reported:
                continue
            reported.add((se.namespace, se.name))
            yield Finding(CODE, Severity.WARNING,
                          f"The ServiceEntries {', '.join(names)} define host {host} port {port} with different "
                          f"protocols ({', '.join(p or 'unset' for p in protocols)}), which can lead to undefined "
                          f"behavior.", se, ("spec", "ports", k, "protocol"))


ANALYZER = Analyzer(CODE, "ConflictingServiceEntryProtocol",
                    "ServiceEntries agree on the protocol of a host and port", check)
