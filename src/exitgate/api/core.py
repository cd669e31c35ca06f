"""Kubernetes ``v1`` Secrets, the way Istio reads them for ``credentialName``.

Secret data is sensitive: the model's repr never shows it, the store keeps it in a 0600 file,
and ``get`` prints it only when asked (``-o yaml``, base64, as kubectl does).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from typing import Annotated

from pydantic import AfterValidator, field_validator, model_validator

from exitgate.api.base import Spec

SECRET_TYPES = ("Opaque", "kubernetes.io/tls", "istio.io/key-and-cert", "generic")
KEY_NAME = re.compile(r"^[-._a-zA-Z0-9]+$")

# Istio's key names (pilot/pkg/credentials/kube): generic and TLS Secrets.
TLS_CERT_KEYS = ("tls.crt", "cert")
TLS_KEY_KEYS = ("tls.key", "key")
CA_CERT_KEYS = ("ca.crt", "cacert")
CRL_KEYS = ("ca.crl", "crl")


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

    @field_validator("data", "string_data")
    @classmethod
    def _key_names(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key in v or {}:
            if not KEY_NAME.match(key):
                raise ValueError(f"invalid key name {key!r}: letters, digits, '-', '_' and '.' only")
        return v

    @model_validator(mode="after")
    def _tls_keys(self) -> SecretSpec:
        if self.type == "kubernetes.io/tls":
            have = self.decoded()
            missing = [k for k in ("tls.crt", "tls.key") if k not in have]
            if missing:
                raise ValueError(f"a kubernetes.io/tls Secret needs {' and '.join(missing)}")
        return self

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
