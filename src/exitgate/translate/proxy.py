"""What every proxy's translation shares: the SDS names its listeners and clusters need."""

from __future__ import annotations

from collections.abc import Sequence

from exitgate.ir import Cluster, HttpListener, TlsPassthroughListener


def secret_names(listeners: Sequence[HttpListener | TlsPassthroughListener], clusters: Sequence[Cluster]) -> tuple[str, ...]:
    found: list[str] = []
    for c in clusters:
        if c.tls is not None:
            found += [s for s in (c.tls.client_cert_secret, c.tls.validation_secret) if s]
    for lst in listeners:
        if lst.tls is not None:
            found += [s for s in (lst.tls.cert_secret, lst.tls.validation_secret) if s]
    return tuple(sorted(set(found)))
