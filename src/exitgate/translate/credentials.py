"""``credentialName`` Secrets -> the SDS secrets a proxy is served (pure).

Istio's rules: a ``credentialName`` resolves in the namespace of the proxy that uses it (the
egress gateway's), never elsewhere, so one team cannot borrow another's client certificate. The
CA that verifies the server comes from a Secret named ``<name>-cacert`` when there is one, else
from the ``ca.crt``/``cacert`` key of the Secret itself; a CRL (``ca.crl``/``crl``) travels with
the CA.
"""

from __future__ import annotations

from collections.abc import Sequence

from exitgate import ir, names
from exitgate.api import diagnostics as dx
from exitgate.api.core import Credential, SecretSpec, credential
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.resources import Resource


def find_secret(resources: Sequence[Resource], namespace: str, name: str) -> Resource | None:
    for r in resources:
        if r.kind == "Secret" and r.namespace == namespace and r.name == name:
            return r
    return None


def _cred(resources: Sequence[Resource], namespace: str, name: str) -> Credential | None:
    r = find_secret(resources, namespace, name)
    if r is None:
        return None
    assert isinstance(r.spec, SecretSpec)
    return credential(r.spec)


def ca_of(resources: Sequence[Resource], namespace: str, name: str) -> Credential | None:
    """The CA (and CRL) for ``credentialName: name``, from ``name-cacert`` or ``name``."""
    for candidate in (name + names.CACERT_SUFFIX, name):
        c = _cred(resources, namespace, candidate)
        if c is not None and c.ca:
            return c
    return None


def _elsewhere(resources: Sequence[Resource], namespace: str, name: str) -> str:
    others = sorted(r.namespace for r in resources if r.kind == "Secret" and r.name == name and r.namespace != namespace)
    if not others:
        return ""
    return (f"; a Secret {name} exists in namespace {', '.join(others)}, but credentialName resolves only in the "
            f"namespace of the proxy that uses it ({namespace})")


def resolve_credential(resources: Sequence[Resource], namespace: str, sds_name: str,
                       proxy: str) -> tuple[ir.SecretData | None, Diagnostic | None]:
    """The data behind ``kubernetes://NAME`` or ``kubernetes://NAME-cacert`` for a proxy in
    ``namespace``; or a diagnostic saying why there is none (the proxy then fails closed)."""
    name, is_ca = names.parse_credential_secret(sds_name)
    if is_ca:
        c = ca_of(resources, namespace, name)
        if c is None or c.ca is None:
            return None, Diagnostic(dx.NOT_FOUND, Severity.ERROR,
                                    f"{proxy}: no CA certificate for credentialName {name}: neither Secret "
                                    f"{namespace}/{name}{names.CACERT_SUFFIX} nor {namespace}/{name} has ca.crt or cacert"
                                    + _elsewhere(resources, namespace, name))
        return ir.SecretData(sds_name, ca_pem=c.ca, crl_pem=c.crl), None
    c = _cred(resources, namespace, name)
    if c is None:
        return None, Diagnostic("IST0101", Severity.ERROR,
                                f"{proxy}: Referenced credentialName not found: Secret {namespace}/{name}"
                                + _elsewhere(resources, namespace, name))
    if not c.cert or not c.key:
        return None, Diagnostic(dx.INVALID_VALUE, Severity.ERROR,
                                f"{proxy}: Secret {namespace}/{name} has no client certificate and key "
                                "(tls.crt and tls.key, or cert and key)")
    return ir.SecretData(sds_name, cert_pem=c.cert, key_pem=c.key), None
