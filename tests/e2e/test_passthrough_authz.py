"""AuthorizationPolicy on TLS passthrough at the egress gateway (Istio's RBAC network filter), on
real Envoy processes, real curl and nginx as edition.cnn.com: Istio's "Egress Gateways" HTTPS
YAML unchanged, plus a DENY on the connection's SNI."""

from __future__ import annotations

from pathlib import Path

import pytest

from exitgate.demo.standins import find_nginx

from tests.e2e.harness import EXAMPLES, Exitgate, until
from tests.e2e.test_tls_origination import HOST, exitgate, start  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_nginx() is None, reason="nginx not installed")]

HTTPS = EXAMPLES / "egress-gateway-https"
POLICY = "ns[istio-system]-policy[deny-cnn]-rule[0]"
DENY_CNN = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-cnn
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: egressgateway
  action: DENY
  rules:
  - when:
    - key: connection.sni
      values: [{HOST}]
"""


def test_deny_by_sni_closes_the_passthrough_connection(exitgate: Exitgate, tmp_path: Path) -> None:  # noqa: F811
    exitgate.apply(HTTPS / "01-serviceentry.yaml", HTTPS / "02-gateway-destinationrule-virtualservice.yaml")
    ca = str(tmp_path / "trust.pem")

    def code() -> str:
        return exitgate.curl("--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}", f"https://{HOST}/").stdout

    assert until(code, lambda o: o == "200") == "200"

    policy = tmp_path / "deny-cnn.yaml"
    policy.write_text(DENY_CNN)
    exitgate.apply(policy)
    refused = until(lambda: exitgate.curl("--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}",
                                          f"https://{HOST}/"), lambda p: p.returncode != 0)
    # The gateway closes the connection during the handshake: no HTTP answer at all.
    assert refused.returncode != 0 and refused.stdout in ("", "000"), (refused.stdout, refused.stderr)

    marker = f"rbac_access_denied_matched_policy[{POLICY}]"
    log = until(exitgate.gateway_log, lambda t: marker in t)
    line = next((ln for ln in log.splitlines() if marker in ln), "")
    # Istio's access-log format: %CONNECTION_TERMINATION_DETAILS% names the policy, the SNI is the client's.
    assert f'"- - -" 0 - - {marker} ' in line and f" {HOST} " in line, log[-2000:]

    exitgate.delete(policy)
    assert until(code, lambda o: o == "200") == "200"
