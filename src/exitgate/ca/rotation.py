"""Workload certificates per identity, reissued at half-life: what the SDS server hands out.

``WorkloadCertManager`` keeps one current certificate per (namespace, service account). ``get``
returns it, reissuing first when it is due; ``due`` tells a control-plane loop which identities
need a new certificate pushed to the proxies that hold them, and ``next_rotation`` when to look
again. Time comes only from the injected clock, so tests drive rotation with a fake one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple

from exitgate.ca.authority import DEFAULT_ROTATION_RATIO, IssuedCert, MeshCA


class Identity(NamedTuple):
    namespace: str
    service_account: str


class WorkloadCertManager:
    """Per-identity certificate cache with Istio's rotation rule (``IssuedCert.needs_rotation``).

    Thread-safe: the gRPC server calls ``get`` from its worker threads, and two proxies of the
    same identity asking at once must end up with the same certificate, not two.
    """

    def __init__(
        self,
        ca: MeshCA,
        ttl: timedelta,
        clock: Callable[[], datetime],
        ratio: float = DEFAULT_ROTATION_RATIO,
    ) -> None:
        if ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"rotation ratio must be within [0, 1], got {ratio}")
        self._ca = ca
        self._ttl = ttl
        self._clock = clock
        self._ratio = ratio
        self._certs: dict[Identity, IssuedCert] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, service_account: str) -> IssuedCert:
        """The current certificate of the identity, issuing or reissuing it when due."""
        identity = Identity(namespace, service_account)
        with self._lock:
            now = self._clock()
            cert = self._certs.get(identity)
            if cert is None or cert.needs_rotation(now, self._ratio):
                cert = self._ca.issue_workload(namespace, service_account, self._ttl, now=now)
                self._certs[identity] = cert
            return cert

    def due(self, now: datetime | None = None) -> list[Identity]:
        """Identities whose cached certificate needs rotation at ``now`` (default: the clock),
        sorted. Calling ``get`` for each reissues them; the caller then pushes the new secrets."""
        with self._lock:
            if now is None:
                now = self._clock()
            return sorted(i for i, c in self._certs.items() if c.needs_rotation(now, self._ratio))

    def next_rotation(self) -> datetime | None:
        """The earliest time any cached certificate becomes due, None when nothing is cached.
        Lets a control-plane loop sleep until then instead of polling."""
        with self._lock:
            return min((c.rotation_at(self._ratio) for c in self._certs.values()), default=None)

    def identities(self) -> list[Identity]:
        with self._lock:
            return sorted(self._certs)

    def forget(self, namespace: str, service_account: str) -> None:
        """Drop an identity no proxy uses any more, so ``due`` stops reporting it."""
        with self._lock:
            self._certs.pop(Identity(namespace, service_account), None)
