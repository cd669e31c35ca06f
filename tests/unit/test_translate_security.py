"""Two rules where a mistake would widen trust, checked on the translated gateway:

* a ``credentialName`` is verified only against that Secret's CA (``NAME-cacert`` or the
  Secret's ``ca.crt``); a misspelt name or a Secret without a CA fails closed, never falls back
  to the system trust store;
* a Gateway server's ``namespace/host`` hosts decide which namespaces' VirtualServices bind.
"""

from __future__ import annotations

import pytest

from exitgate import names
from exitgate.api.loader import load_text
from exitgate.ir import Cluster
from exitgate.mesh import MeshConfig
from exitgate.translate.credentials import resolve_credential
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.snapshot import Snapshot

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"""


def dr(credential: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: originate, namespace: istio-system}}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {{mode: SIMPLE, credentialName: {credential}}}
"""


SECRET_WITHOUT_CA = """apiVersion: v1
kind: Secret
metadata: {name: api-credential, namespace: istio-system}
stringData: {tls.crt: CERT, tls.key: KEY}
"""


def snapshot(*docs: str) -> Snapshot:
    loaded = load_text("---\n".join(docs), "case.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return Snapshot(loaded.resources, MeshConfig())


def api_cluster(snap: Snapshot) -> Cluster:
    pc, _ = translate_gateway(snap, snap.mesh.gateways[0])
    return next(c for c in pc.clusters if c.name == names.cluster_name("api.example.com", 443))


@pytest.mark.parametrize("docs", [(SE, dr("api-credentail")), (SE, dr("api-credential"), SECRET_WITHOUT_CA)],
                         ids=["misspelt-name", "secret-without-ca"])
def test_credential_name_without_its_ca_fails_closed(docs: tuple[str, ...]) -> None:
    snap = snapshot(*docs)
    cluster = api_cluster(snap)
    assert cluster.tls is not None
    name = docs[1].split("credentialName: ")[1].split("}")[0]
    # Verified against the credential's own CA only, never the system trust store ...
    assert cluster.tls.validation_secret == names.credential_cacert_secret(name)
    assert cluster.tls.validation_secret != names.SYSTEM_CA_SECRET
    # ... which cannot be had, so the secret is never sent and every handshake fails.
    data, diag = resolve_credential(snap, "istio-system", cluster.tls.validation_secret, "gw")
    assert data is None and diag is not None and name in diag.message


GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["{host}"]
"""

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: via-egress, namespace: {ns}}}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/egress]
  http:
  - route:
    - destination: {{host: api.example.com, port: {{number: 443}}}}
"""


@pytest.mark.parametrize(("server_host", "vs_ns", "binds"), [
    ("*", "default", True),
    ("*/api.example.com", "default", True),
    ("default/api.example.com", "default", True),
    ("default/*", "default", True),
    ("./api.example.com", "default", False),    # "." is the Gateway's namespace, istio-system
    ("./api.example.com", "istio-system", True),
    ("team-a/*", "default", False),
    ("default/other.example.com", "default", False),
])
def test_server_hosts_namespace_restricts_which_virtual_services_bind(server_host: str, vs_ns: str,
                                                                       binds: bool) -> None:
    snap = snapshot(SE, GATEWAY.format(host=server_host), VS.format(ns=vs_ns))
    pc, _ = translate_gateway(snap, snap.mesh.gateways[0])
    domains = [d for rc in pc.route_configs for v in rc.virtual_hosts for d in v.domains]
    assert ("api.example.com" in domains) is binds


def test_tls_passthrough_fails_closed_under_an_authorization_policy() -> None:
    """AuthorizationPolicy on passthrough TLS is Envoy's RBAC network filter, with Istio's TCP
    rule: an HTTP-only field (``paths``) cannot be checked on a connection, so a DENY rule is
    applied without it. A DENY on ``/admin`` alone therefore refuses every connection (Istio
    does the same), and says so; the listener stays."""
    from pathlib import Path

    from exitgate.envoy import filters
    from tests.unit.rbac_eval import connection, evaluate

    https = Path(__file__).resolve().parents[2] / "examples" / "egress-gateway-https"
    docs = [(https / f).read_text() for f in ("01-serviceentry.yaml", "02-gateway-destinationrule-virtualservice.yaml")]
    snap = snapshot(*docs)
    pc, _ = translate_gateway(snap, snap.mesh.gateways[0])
    assert [c.server_names for lst in pc.tls_passthrough_listeners for c in lst.chains] == [("edition.cnn.com",)]
    assert pc.tls_passthrough_listeners[0].rbac == ()
    deny = ("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: istio-system}\n"
            "spec:\n  action: DENY\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n")
    snap = snapshot(*docs, deny)
    pc, diags = translate_gateway(snap, snap.mesh.gateways[0])
    (lst,) = pc.tls_passthrough_listeners
    assert [c.server_names for c in lst.chains] == [("edition.cnn.com",)]
    verdict = evaluate(filters.network_rbac_filters(lst.rbac), connection("edition.cnn.com"))
    assert verdict.details == "rbac_access_denied_matched_policy[ns[istio-system]-policy[d]-rule[0]]"
    assert [(d.field, "'paths' is HTTP only" in d.message and "matches more connections" in d.message)
            for d in diags] == [("spec.rules[0].to[0].operation.paths", True)]
