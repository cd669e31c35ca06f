"""Kubernetes ``v1`` Secrets, the way Istio reads them for ``credentialName``.

Secret data is sensitive: the model's repr never shows it, the store keeps it in a 0600 file,
and ``get`` prints it only when asked (``-o yaml``, base64, as kubectl does).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator

from exitgate.api.base import Issue, Spec, Where, warning
from exitgate.api.diagnostics import Severity

SECRET_TYPES = ("Opaque", "kubernetes.io/tls", "istio.io/key-and-cert", "generic")
KEY_NAME = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_SECRET_BYTES = 1024 * 1024  # Kubernetes' limit on a Secret's data

# Istio's key names (pilot/pkg/credentials/kube): generic and TLS Secrets.
TLS_CERT_KEYS = ("tls.crt", "cert")
TLS_KEY_KEYS = ("tls.key", "key")
CA_CERT_KEYS = ("ca.crt", "cacert")
CRL_KEYS = ("ca.crl", "crl")


def key_problem(key: str) -> str | None:
    """Kubernetes' rule for Secret keys (``IsConfigMapKey``)."""
    if not key:
        return "a key must not be empty"
    if len(key) > 253:
        return f"key {key[:40]!r}... is longer than 253 characters"
    if key in (".", "..") or not KEY_NAME.match(key):
        return f"invalid key name {key!r}: letters, digits, '-', '_' and '.' only (and not '.' or '..')"
    return None


def _check_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64 (data values are base64; use stringData for plain text)") from None
    return value


Base64Value = Annotated[str, AfterValidator(_check_base64)]


class SecretSpec(Spec):
    """The top-level fields of a Secret (Kubernetes keeps them outside ``spec``)."""

    type: str = "Opaque"
    data: dict[str, Base64Value] | None = None
    string_data: dict[str, str] | None = None
    immutable: bool | None = None

    def __repr__(self) -> str:
        keys = sorted({*(self.data or {}), *(self.string_data or {})})
        return f"SecretSpec(type={self.type!r}, keys={keys!r})"

    __str__ = __repr__

    def issues(self, where: Where) -> Iterable[Issue]:
        """Kubernetes' rules for a Secret, and what Istio needs of a TLS one."""
        out: list[Issue] = []
        for field, values in (("data", self.data), ("stringData", self.string_data)):
            for key in values or {}:
                problem = key_problem(key)
                if problem:
                    out.append(Issue((field, key), problem))
        for key in sorted(set(self.data or {}) & set(self.string_data or {})):
            out.append(warning(("stringData", key), f"{key!r} is in both data and stringData; stringData wins"))
        if not any(i.severity is Severity.ERROR for i in out):
            have = self.decoded()
            if sum(len(v) for v in have.values()) > MAX_SECRET_BYTES:
                out.append(Issue(("data",) if self.data else ("stringData",), "a Secret holds at most 1 MiB of data"))
            if self.type == "kubernetes.io/tls":
                missing = [k for k in ("tls.crt", "tls.key") if k not in have]
                if missing:
                    at = ("data",) if self.data is not None else ("stringData",) if self.string_data is not None \
                        else ("type",)
                    out.append(Issue(at, f"a kubernetes.io/tls Secret needs {' and '.join(missing)}; add "
                                         f"{'them' if len(missing) > 1 else 'it'}, or use type Opaque"))
        return out

    def decoded(self) -> dict[str, bytes]:
        out = {k: base64.b64decode(v) for k, v in (self.data or {}).items()}
        out.update({k: v.encode() for k, v in (self.string_data or {}).items()})
        return out


@dataclass(frozen=True)
class Credential:
    """What one Secret offers as a TLS credential. ``cert``/``key`` for a client certificate,
    ``ca``/``crl`` for verifying the server."""

    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    ca: bytes | None = None
    crl: bytes | None = None


def _first(data: dict[str, bytes], keys: tuple[str, ...]) -> bytes | None:
    return next((data[k] for k in keys if k in data and data[k]), None)


def credential(spec: SecretSpec) -> Credential:
    data = spec.decoded()
    return Credential(cert=_first(data, TLS_CERT_KEYS), key=_first(data, TLS_KEY_KEYS),
                      ca=_first(data, CA_CERT_KEYS), crl=_first(data, CRL_KEYS))
