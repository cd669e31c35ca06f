"""The Gateway kind: servers, their ports and server-side TLS settings (Istio's
``validateTLSOptions``), and the rules relating protocol, bind address and TLS.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field

from exitgate.api import diagnostics as dx
from exitgate.api.base import (
    UNIX_PREFIX,
    Issue,
    Path,
    Spec,
    Where,
    is_ip,
    unix_address_problem,
    warning,
)
from exitgate.api.networking.common import (
    HTTP_PROTOCOLS,
    ISTIO_HTTP,
    PORT_RANGE,
    TCP_PROTOCOLS,
    TLS_PROTOCOLS,
    GatewayHost,
    Protocol,
    _a,
)


class Port(Spec):
    """A Gateway server's port. Number 0 is for servers bound to a unix socket."""

    number: int = Field(ge=0, le=65535)
    protocol: Protocol
    name: str = Field(min_length=1)
    target_port: int | None = Field(default=None, ge=0, le=65535)


TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]
CIPHER_SUITES = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
})


class TLSCertificate(Spec):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


class ServerTLSSettings(Spec):
    https_redirect: bool | None = None
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"] | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    # At most two (an RSA and an ECDSA certificate): Istio's CRD refuses more, before the
    # validation webhook (which would only warn) sees them.
    credential_names: list[str] | None = Field(default=None, min_length=1, max_length=2)
    tls_certificates: list[TLSCertificate] | None = Field(default=None, min_length=1, max_length=2)
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: TLSVersion | None = None
    max_protocol_version: TLSVersion | None = None
    cipher_suites: list[str] | None = None
    ca_cert_credential_name: str | None = None
    insecure_skip_verify: bool | None = None

    UNSUPPORTED = frozenset({
        "https_redirect", "server_certificate", "private_key", "ca_certificates", "ca_crl",
        "credential_name", "credential_names", "tls_certificates", "subject_alt_names", "verify_certificate_spki",
        "verify_certificate_hash", "min_protocol_version", "max_protocol_version", "cipher_suites",
        "ca_cert_credential_name", "insecure_skip_verify",
    })

    def issues(self, where: Where) -> Iterable[Issue]:
        """Istio's ``validateTLSOptions``."""
        out: list[Issue] = []
        mode = self.mode or "PASSTHROUGH"
        if self.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not self.cipher_suites:
            out.append(warning(("minProtocolVersion",), "TLS versions below TLSV1_2 need compatible cipherSuites "
                                                        "set explicitly; the defaults no longer include them"))
        seen: set[str] = set()
        for i, suite in enumerate(self.cipher_suites or []):
            if suite and suite != "ALL" and suite[0].isalnum() and suite not in CIPHER_SUITES:
                out.append(warning(("cipherSuites", i), f"unknown cipher suite {suite!r} will be ignored"))
            elif suite in seen:
                out.append(warning(("cipherSuites", i), f"duplicate cipher suite {suite!r} will be ignored"))
            seen.add(suite)
        if mode == "ISTIO_MUTUAL":
            for name, value in (("serverCertificate", self.server_certificate), ("privateKey", self.private_key),
                                ("caCertificates", self.ca_certificates), ("tlsCertificates", self.tls_certificates),
                                ("credentialName", self.credential_name), ("credentialNames", self.credential_names)):
                if value:
                    out.append(Issue((name,), f"ISTIO_MUTUAL uses the mesh's own certificates; remove {name}"))
            return out
        if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
                self.ca_crl or self.server_certificate or self.private_key or self.ca_certificates or
                self.tls_certificates or self.credential_name or self.credential_names):
            out.append(warning((), f"{mode} forwards the client's TLS untouched and uses no certificates; they will "
                                   f"be ignored"))
        sources = [(name, present) for name, present in (
            ("serverCertificate", bool(self.server_certificate and self.private_key)),
            ("credentialName", bool(self.credential_name)), ("credentialNames", bool(self.credential_names)),
            ("tlsCertificates", bool(self.tls_certificates))) if present]
        if len(sources) > 1:
            first = "serverCertificate and privateKey" if sources[0][0] == "serverCertificate" else sources[0][0]
            out.append(Issue((sources[1][0],), f"set one source of server certificates: credentialName, "
                                               f"credentialNames, serverCertificate and privateKey, or tlsCertificates "
                                               f"(this has {first} and {sources[1][0]})"))
        terminates = mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
        if terminates and (self.credential_name or self.credential_names):
            return out  # the Secret supplies the certificates (and the CA bundle)
        if terminates:
            if mode != "SIMPLE" and not self.ca_certificates:
                out.append(Issue(("caCertificates",), f"{mode} TLS needs a CA bundle to verify client certificates: "
                                                      f"set credentialName (a Secret holding it) or caCertificates"))
            certs: list[tuple[Path, TLSCertificate]] = \
                [(("tlsCertificates", i), c) for i, c in enumerate(self.tls_certificates)] if self.tls_certificates \
                else [((), TLSCertificate(server_certificate=self.server_certificate, private_key=self.private_key))]
            for at, cert in certs:
                for name, value, what in (("serverCertificate", cert.server_certificate, "a server certificate"),
                                          ("privateKey", cert.private_key, "a private key")):
                    if not value:
                        out.append(Issue(at + (name,), f"{mode} TLS needs {what}: set credentialName (a Secret "
                                                       f"holding them) or {name}"))
        if self.ca_crl:
            if self.credential_name:
                out.append(Issue(("caCrl",), "caCrl cannot be combined with credentialName: put the CRL in the "
                                             "Secret (ca.crl)"))
            if mode == "SIMPLE":
                out.append(Issue(("caCrl",), "caCrl checks client certificates, which SIMPLE TLS does not ask for; "
                                             "use MUTUAL or remove caCrl"))
        return out


class Server(Spec):
    port: Port
    bind: str | None = None
    hosts: list[GatewayHost] = Field(min_length=1)
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None

    UNSUPPORTED = frozenset({"bind", "default_endpoint"})

    @property
    def is_passthrough(self) -> bool:
        """A TLS (or HTTPS) server that passes the client's TLS through, routed by SNI
        (``PASSTHROUGH`` is the mode when none is given)."""
        return self.port.protocol in TLS_PROTOCOLS and self.tls is not None and self.tls.mode in (None, "PASSTHROUGH")

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        protocol = self.port.protocol
        if protocol not in HTTP_PROTOCOLS | TLS_PROTOCOLS | TCP_PROTOCOLS:
            return [("port", f"gateway server protocol {protocol} is not supported by exitgate yet "
                             "(HTTP, HTTP2, GRPC, HTTPS, TLS and TCP are)")]
        if self.tls is None or protocol not in TLS_PROTOCOLS or self.is_passthrough:
            return []
        if self.tls.mode == "ISTIO_MUTUAL":
            # HTTPS: the mesh's mTLS terminated, then HTTP; TLS: terminated, then tcp routes.
            return []
        return [(("tls", "mode"), f"gateway server TLS mode {self.tls.mode} is not supported by exitgate yet on a "
                                  f"{protocol} port (ISTIO_MUTUAL and PASSTHROUGH are)")]

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        port = self.port
        bind = self.bind or ""
        unix = bind.startswith(UNIX_PREFIX)
        if port.number == 0 and not unix:
            out.append(Issue(("port", "number"), f"port number 0 is only for servers bound to a unix socket; "
                                                 f"{PORT_RANGE}"))
        if port.target_port:
            out.append(Issue(("port", "targetPort"), "targetPort has no effect on a Gateway server; remove it"))
        if unix:
            problem = unix_address_problem(bind[len(UNIX_PREFIX):])
            if problem:
                out.append(Issue(("bind",), problem))
            if port.number != 0:
                out.append(Issue(("port", "number"), "a server bound to a unix socket takes port number 0"))
        elif bind and not is_ip(bind):
            out.append(Issue(("bind",), f"bind {bind!r} must be an IP address or unix:///path"))
        protocol = port.protocol
        if protocol in TLS_PROTOCOLS and self.tls is None:
            out.append(Issue(("tls",), f"{_a(protocol)} {protocol} server needs tls settings; for TLS origination at an egress "
                                       f"gateway use tls: {{mode: ISTIO_MUTUAL}}"))
        elif protocol not in TLS_PROTOCOLS and self.tls is not None:
            tls = self.tls
            if protocol in ISTIO_HTTP:
                if tls.mode not in (None, "PASSTHROUGH", "AUTO_PASSTHROUGH") or tls.ca_certificates or \
                        tls.private_key or tls.server_certificate:
                    out.append(Issue(("tls",), f"a plain {protocol} server cannot have TLS settings (only "
                                               f"httpsRedirect); use protocol HTTPS for a TLS server"))
            else:
                out.append(Issue(("tls",), f"{_a(protocol)} {protocol} server cannot have TLS settings; use protocol HTTPS or TLS"))
        if self.tls is not None and self.tls.https_redirect and protocol not in ISTIO_HTTP:
            out.append(warning(("tls", "httpsRedirect"), "httpsRedirect applies only to HTTP servers"))
        return out


class GatewaySpec(Spec):
    selector: dict[str, str] = Field(default_factory=dict)
    # Istio's rule, not its schema (``ValidateGateway``): a Gateway without servers is refused
    # by validation but still read by Istio's analysis, as by exitgate's ``analyze``.
    servers: list[Server] = Field(default_factory=list)

    def issues(self, where: Where) -> Iterable[Issue]:
        out = []
        if not self.servers:
            out.append(Issue(("servers",), "gateway must have at least one server", code=dx.MISSING_FIELD))
        names: dict[str, int] = {}
        for i, server in enumerate(self.servers):
            name = server.port.name
            if name in names:
                out.append(Issue(("servers", i, "port", "name"), f"port name {name!r} is already used by "
                                                                  f"servers[{names[name]}]; each server's port needs "
                                                                  f"its own name"))
            names.setdefault(name, i)
        return out
