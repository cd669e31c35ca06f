"""EG0108 CertificateExpiry: a certificate in a Secret (certificate chain or CA bundle) has
expired or is not valid yet (error), or expires within 30 days (warning). Judged against the
clock given to ``analyze``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.certs import aware, load_certs, not_after, not_before
from exitgate.analyze.model import Context, Finding
from exitgate.api.core import CA_CERT_KEYS, TLS_CERT_KEYS
from exitgate.api.diagnostics import Severity

CODE = "EG0108"
EXPIRY_WARNING = timedelta(days=30)


def check(ctx: Context) -> Iterator[Finding]:
    now = aware(ctx.now)
    for secret in ctx.secrets:
        decoded = secret.spec.decoded()
        for key in sorted(decoded):
            if key not in TLS_CERT_KEYS + CA_CERT_KEYS:
                continue
            where = "stringData" if key in (secret.spec.string_data or {}) else "data"
            what = "CA certificate" if key in CA_CERT_KEYS else "certificate"
            for cert in load_certs(decoded[key]):
                subject = cert.subject.rfc4514_string()
                if now > not_after(cert):
                    yield Finding(CODE, Severity.ERROR,
                                  f"{what} {subject} in {key} expired on {not_after(cert):%Y-%m-%d %H:%M:%S} UTC",
                                  secret, (where, key))
                elif now < not_before(cert):
                    yield Finding(CODE, Severity.ERROR,
                                  f"{what} {subject} in {key} is not valid before "
                                  f"{not_before(cert):%Y-%m-%d %H:%M:%S} UTC", secret, (where, key))
                elif not_after(cert) - now <= EXPIRY_WARNING:
                    days = (not_after(cert) - now).days
                    yield Finding(CODE, Severity.WARNING,
                                  f"{what} {subject} in {key} expires on {not_after(cert):%Y-%m-%d %H:%M:%S} UTC "
                                  f"(in {days} days)", secret, (where, key))
                else:
                    continue
                break  # one finding per key: the first problem in the bundle


ANALYZER = Analyzer(CODE, "CertificateExpiry", "Secret certificates are valid now and for 30 more days", check)
