"""``credentialName`` Secrets -> the SDS secrets a proxy is served (pure).

Istio's rules: a ``credentialName`` resolves in the namespace of the proxy that uses it (the
egress gateway's), never elsewhere, so one team cannot borrow another's client certificate. The
CA that verifies the server comes from a Secret named ``<name>-cacert`` when there is one, else
from the ``ca.crt``/``cacert`` key of the Secret itself; a CRL (``ca.crl``/``crl``) travels with
the CA.
"""

from __future__ import annotations

from exitgate import ir, names
from exitgate.api import diagnostics as dx
from exitgate.api.core import Credential, credential
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.translate.snapshot import Snapshot


def _cred(snap: Snapshot, namespace: str, name: str) -> Credential | None:
    r = snap.secret(namespace, name)
    return credential(r.spec) if r is not None else None


def ca_of(snap: Snapshot, namespace: str, name: str) -> Credential | None:
    """The CA (and CRL) for ``credentialName: name``, from ``name-cacert`` or ``name``."""
    for candidate in (name + names.CACERT_SUFFIX, name):
        c = _cred(snap, namespace, candidate)
        if c is not None and c.ca:
            return c
    return None


def _elsewhere(snap: Snapshot, namespace: str, name: str) -> str:
    others = [ns for ns in snap.secret_namespaces(name) if ns != namespace]
    if not others:
        return ""
    return (f"; a Secret {name} exists in namespace {', '.join(others)}, but credentialName resolves only in the "
            f"namespace of the proxy that uses it ({namespace})")


def resolve_credential(snap: Snapshot, namespace: str, sds_name: str,
                       proxy: str) -> tuple[ir.SecretData | None, Diagnostic | None]:
    """The data behind ``kubernetes://NAME`` or ``kubernetes://NAME-cacert`` for a proxy in
    ``namespace``; or a diagnostic saying why there is none (the proxy then fails closed)."""
    name, is_ca = names.parse_credential_secret(sds_name)
    if is_ca:
        c = ca_of(snap, namespace, name)
        if c is None or c.ca is None:
            return None, Diagnostic(dx.NOT_FOUND, Severity.ERROR,
                                    f"{proxy}: no CA certificate for credentialName {name}: neither Secret "
                                    f"{namespace}/{name}{names.CACERT_SUFFIX} nor {namespace}/{name} has ca.crt or cacert"
                                    + _elsewhere(snap, namespace, name))
        return ir.SecretData(sds_name, ca_pem=c.ca, crl_pem=c.crl), None
    c = _cred(snap, namespace, name)
    if c is None:
        return None, Diagnostic("IST0101", Severity.ERROR,
                                f"{proxy}: Referenced credentialName not found: Secret {namespace}/{name}"
                                + _elsewhere(snap, namespace, name))
    if not c.cert or not c.key:
        return None, Diagnostic(dx.INVALID_VALUE, Severity.ERROR,
                                f"{proxy}: Secret {namespace}/{name} has no client certificate and key "
                                "(tls.crt and tls.key, or cert and key)")
    return ir.SecretData(sds_name, cert_pem=c.cert, key_pem=c.key), None
