"""Cross-resource analyzers: for each analyzer a configuration that triggers it (code, resource,
field path) and a near miss that does not; Istio's documented egress configurations produce no
errors; exact lines from the files."""

from __future__ import annotations

import base64
import copy
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ruamel.yaml import YAML

from exitgate import analyze as az
from exitgate.analyze.analyzer import Analyzer
from exitgate.analyze.locate import FileLocator
from exitgate.api.core import SecretSpec
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.loader import SPEC_MODELS, load_paths, load_text, to_plain
from exitgate.api.resources import Resource, Source
from exitgate.mesh import MeshConfig, load_mesh

CASES = Path(__file__).parent / "analyze_cases"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tls-origination"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)

Docs = list[dict[str, Any]]


# --- building blocks ---------------------------------------------------------------------------

def load(text: str, filename: str = "case.yaml", namespace: str = "default") -> list[Resource]:
    """Resources from YAML the way the loader builds them, minus its "not supported yet" refusals
    (MUTUAL, credentialName, PASSTHROUGH...): analyzers judge Istio's YAML whatever the
    translator supports today."""
    out = []
    for doc in YAML(typ="rt").load_all(io.StringIO(text)):
        if doc is None:
            continue
        kind, meta = str(doc["kind"]), doc["metadata"]
        ns = meta.get("namespace", namespace)
        spec = (SecretSpec.model_validate({k: doc[k] for k in ("type", "data", "stringData") if k in doc})
                if kind == "Secret" else SPEC_MODELS[kind][2].model_validate(doc["spec"]))
        raw = to_plain(doc)
        raw["metadata"]["namespace"] = ns
        out.append(Resource(str(doc["apiVersion"]), kind, ns, str(meta["name"]), spec, raw,
                            Source(filename, doc.lc.line + 1)))
    return out


def secret(namespace: str, name: str, data: dict[str, bytes]) -> Resource:
    """A Secret as `kubectl create secret generic --from-file` makes it."""
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    raw = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
           "type": "Opaque", "data": encoded}
    return Resource("v1", "Secret", namespace, name, SecretSpec(data=encoded), raw, Source(f"{name}.secret.yaml", 1))


def dump(docs: Docs) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def run(resources: list[Resource], mesh: MeshConfig | None = None, analyzers: tuple[Analyzer, ...] = az.ANALYZERS,
        now: datetime = NOW) -> list[Diagnostic]:
    return az.analyze(resources, mesh or MeshConfig(), now=now, analyzers=analyzers)


# Istio warns about SIMPLE/MUTUAL without caCertificates, which its own egress tasks use: "clean"
# below means nothing else.
CA_WARNINGS = ("IST0128", "IST0129")


def clean(diags: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.code not in CA_WARNINGS]


def errors(diags: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.is_error]


# --- certificates (fixed dates; NOW is 2025-06-01) ---------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Pki:
    root: bytes
    root_key: ec.EllipticCurvePrivateKey
    root_cert: x509.Certificate
    leaves: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)

    def leaf(self, cn: str, start: datetime, end: datetime) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.root_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end).sign(self.root_key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def pki() -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name("example.com")).issuer_name(_name("example.com"))
            .public_key(key.public_key()).serial_number(1).not_valid_before(_day(2024, 1, 1))
            .not_valid_after(_day(2034, 1, 1)).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    p = Pki(root.public_bytes(serialization.Encoding.PEM), key, root)
    p.leaves["valid"] = p.leaf("client.example.com", _day(2025, 1, 1), _day(2026, 1, 1))
    p.leaves["expired"] = p.leaf("client.example.com", _day(2024, 1, 1), _day(2025, 5, 1))
    p.leaves["soon"] = p.leaf("client.example.com", _day(2025, 1, 1), _day(2025, 6, 15))
    p.leaves["future"] = p.leaf("client.example.com", _day(2025, 7, 1), _day(2026, 7, 1))
    return p


def client_secret(pki: Pki, namespace: str, name: str, which: str = "valid", mismatched_key: bool = False) -> Resource:
    cert, key = pki.leaves[which]
    if mismatched_key:
        key = pki.leaves["soon" if which != "soon" else "valid"][1]
    return secret(namespace, name, {"tls.crt": cert, "tls.key": key, "ca.crt": pki.root})


# --- the base scenario: Istio's "Egress Gateways with TLS Origination" (SIMPLE) ----------------

def base() -> Docs:
    return [dict(d) for d in yaml.safe_load_all((CASES / "istio-001-simple.yaml").read_text())]


def mutual() -> Docs:
    docs = list(yaml.safe_load_all((CASES / "istio-001-mutual.yaml").read_text()))
    system = list(yaml.safe_load_all((CASES / "istio-001-mutual.istio-system.yaml").read_text()))
    for d in system:
        d["metadata"]["namespace"] = "istio-system"
    return docs + system


def mesh001() -> MeshConfig:
    mesh, diags = load_mesh(CASES / "istio-001.mesh.yaml")
    assert mesh is not None, diags
    return mesh


def doc(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


VS = "direct-cnn-through-egress-gateway"
GW_DR = "egressgateway-for-cnn"
CNN_DR = "originate-tls-for-edition-cnn-com"
NGINX_DR = "originate-mtls-for-nginx"


def gw_route(docs: Docs) -> dict[str, Any]:
    """The rule that the egress gateway applies (to edition.cnn.com:443)."""
    route: dict[str, Any] = doc(docs, "VirtualService", VS)["spec"]["http"][1]["route"][0]["destination"]
    return route


def mesh_route(docs: Docs) -> dict[str, Any]:
    route: dict[str, Any] = doc(docs, "VirtualService", VS)["spec"]["http"][0]["route"][0]["destination"]
    return route


# --- trigger / near-miss table -----------------------------------------------------------------

Mutate = Callable[[Docs], None]


@dataclass
class Case:
    id: str
    analyzer: Analyzer
    mutate: Mutate
    expect: tuple[str, str, str] | None  # (code, resource, field) or None: nothing reported
    severity: Severity = Severity.ERROR
    scenario: Callable[[], Docs] = base
    mesh: Callable[[], MeshConfig] = MeshConfig
    secrets: Callable[[Pki], list[Resource]] = lambda pki: []


def nothing(docs: Docs) -> None:
    pass


def set_in(path: list[Any], value: Any, kind: str, name: str | None = None) -> Mutate:
    def mutate(docs: Docs) -> None:
        node: Any = doc(docs, kind, name)
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return mutate


def add(*new: dict[str, Any]) -> Mutate:
    def mutate(docs: Docs) -> None:
        docs.extend(copy.deepcopy(list(new)))
    return mutate


def chain(*steps: Mutate) -> Mutate:
    def mutate(docs: Docs) -> None:
        for s in steps:
            s(docs)
    return mutate


def remove(kind: str, name: str) -> Mutate:
    def mutate(docs: Docs) -> None:
        docs.remove(doc(docs, kind, name))
    return mutate


def vs_cnn(name: str, gateways: list[str]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": name},
            "spec": {"hosts": ["edition.cnn.com"], "gateways": gateways,
                     "http": [{"route": [{"destination": {"host": "edition.cnn.com", "port": {"number": 443}}}]}]}}


def gateway(name: str, port: int, host: str, tls: dict[str, Any] | None, protocol: str = "HTTPS") -> dict[str, Any]:
    server: dict[str, Any] = {"port": {"number": port, "name": f"p{port}", "protocol": protocol}, "hosts": [host]}
    if tls is not None:
        server["tls"] = tls
    return {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": name},
            "spec": {"selector": {"istio": "egressgateway"}, "servers": [server]}}


def service_entry(name: str, port: int, protocol: str, ns: str = "default", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": name, "namespace": ns},
            "spec": {"hosts": ["edition.cnn.com"], "ports": [{"number": port, "name": f"p{port}", "protocol": protocol}],
                     "resolution": "DNS", **extra}}


def move(kind: str, name: str, namespace: str) -> Mutate:
    return set_in(["metadata", "namespace"], namespace, kind, name)


def gw_dr_subset_tls(tls: dict[str, Any]) -> Mutate:
    return set_in(["spec", "subsets", 0, "trafficPolicy", "portLevelSettings", 0, "tls"], tls, "DestinationRule", GW_DR)


def gateway_server(server: dict[str, Any]) -> Mutate:
    return set_in(["spec", "servers", 0], server, "Gateway")


def drop_mesh_route_port(docs: Docs) -> None:
    del gw_route(docs)["port"]


def cnn_port(port: int) -> Mutate:
    def mutate(docs: Docs) -> None:
        gw_route(docs)["port"]["number"] = port
        doc(docs, "DestinationRule", CNN_DR)["spec"]["trafficPolicy"]["portLevelSettings"][0]["port"]["number"] = port
    return mutate


def gw_credential_server(docs: Docs) -> None:
    doc(docs, "Gateway")["spec"]["servers"].append({
        "port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["edition.cnn.com"],
        "tls": {"mode": "SIMPLE", "credentialName": "gw-cred"}})


def cnn_credential(docs: Docs) -> None:
    """SIMPLE origination verifying edition.cnn.com with the CA of credentialName cnn-ca."""
    tls = doc(docs, "DestinationRule", CNN_DR)["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]
    tls["credentialName"] = "cnn-ca"


VSR = f"VirtualService default/{VS}"
GWR = "Gateway default/istio-egressgateway"
MESH_DEST = "spec.http[0].route[0].destination"
GW_DEST = "spec.http[1].route[0].destination"
NGINX_CRED = "spec.trafficPolicy.portLevelSettings[0].tls.credentialName"

A = az  # analyzer modules are attributes of the package


CASE_TABLE: list[Case] = [
    # IST0101: references
    Case("gateway-ref", A.gateway_ref.ANALYZER, set_in(["spec", "gateways", 0], "egress-typo", "VirtualService"),
         ("IST0101", VSR, "spec.gateways[0]")),
    Case("gateway-ref/ok", A.gateway_ref.ANALYZER, nothing, None),
    Case("destination-host", A.destination_host.ANALYZER, lambda d: gw_route(d).update(host="edition.cnn.comm"),
         ("IST0101", VSR, GW_DEST + ".host")),
    Case("destination-host:port", A.destination_host.ANALYZER, lambda d: gw_route(d).update(port={"number": 8443}),
         ("IST0101", VSR, GW_DEST + ".port.number")),
    Case("destination-host/ok", A.destination_host.ANALYZER, nothing, None),
    Case("destination-subset", A.destination_subset.ANALYZER, lambda d: mesh_route(d).update(subset="cnn2"),
         ("IST0101", VSR, MESH_DEST + ".subset")),
    Case("destination-subset/ok", A.destination_subset.ANALYZER, nothing, None),
    Case("gateway-selector", A.gateway_selector.ANALYZER,
         set_in(["spec", "selector"], {"istio": "ingressgateway"}, "Gateway"), ("IST0101", GWR, "spec.selector")),
    Case("gateway-selector/ok", A.gateway_selector.ANALYZER, nothing, None),
    Case("credential-ref", A.credential_ref.ANALYZER, nothing,
         ("IST0101", f"DestinationRule istio-system/{NGINX_DR}", NGINX_CRED), scenario=mutual, mesh=mesh001),
    Case("credential-ref/ok", A.credential_ref.ANALYZER, nothing, None, scenario=mutual, mesh=mesh001,
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential")]),
    Case("credential-ref/simple", A.credential_ref.ANALYZER, cnn_credential,
         ("IST0101", f"DestinationRule default/{CNN_DR}", "spec.trafficPolicy.portLevelSettings[0].tls.credentialName")),
    Case("credential-ref/simple-cacert", A.credential_ref.ANALYZER, cnn_credential, None,
         secrets=lambda p: [secret("istio-system", "cnn-ca-cacert", {"ca.crt": p.root})]),
    # EG0103: credentialName in the wrong namespace
    Case("credential-namespace", A.credential_namespace.ANALYZER, nothing,
         ("EG0103", f"DestinationRule istio-system/{NGINX_DR}", NGINX_CRED), scenario=mutual, mesh=mesh001,
         secrets=lambda p: [client_secret(p, "default", "client-credential")]),
    Case("credential-namespace/ok", A.credential_namespace.ANALYZER, nothing, None, scenario=mutual, mesh=mesh001,
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential"),
                            client_secret(p, "default", "client-credential")]),
    # IST0109
    Case("mesh-host-conflict", A.mesh_host_conflict.ANALYZER, add(vs_cnn("cnn-2", ["mesh"])),
         ("IST0109", "VirtualService default/cnn-2", "spec.hosts")),
    Case("mesh-host-conflict/ok", A.mesh_host_conflict.ANALYZER, add(vs_cnn("cnn-2", ["istio-egressgateway"])), None),
    # IST0112
    Case("port-selector", A.port_selector.ANALYZER, drop_mesh_route_port, ("IST0112", VSR, GW_DEST)),
    Case("port-selector/ok", A.port_selector.ANALYZER,
         chain(drop_mesh_route_port, set_in(["spec", "ports"], [{"number": 443, "name": "https", "protocol": "HTTPS"}],
                                            "ServiceEntry")), None),
    # IST0128 / IST0129 (Istio's meaning: SIMPLE/MUTUAL without caCertificates) and EG0112
    # (exitgate's: insecureSkipVerify, the server not verified at all)
    Case("ca-destination", A.skip_verify_destination.ANALYZER,
         set_in(["spec", "trafficPolicy", "tls"], {"mode": "SIMPLE"}, "DestinationRule", CNN_DR),
         ("IST0128", f"DestinationRule default/{CNN_DR}", "spec.trafficPolicy.tls"), Severity.WARNING),
    Case("ca-destination/ok", A.skip_verify_destination.ANALYZER,
         set_in(["spec", "trafficPolicy", "tls"], {"mode": "SIMPLE", "caCertificates": "/etc/certs/ca.pem"},
                "DestinationRule", CNN_DR), None),
    # Istio's own task (SIMPLE at port 443, no caCertificates) is warned about, as istioctl does.
    Case("ca-port", A.skip_verify_port.ANALYZER, nothing,
         ("IST0129", f"DestinationRule default/{CNN_DR}", "spec.trafficPolicy.portLevelSettings[0].tls"), Severity.WARNING),
    Case("ca-port/ok", A.skip_verify_port.ANALYZER,
         set_in(["spec", "trafficPolicy", "portLevelSettings", 0, "tls", "caCertificates"], "/etc/certs/ca.pem",
                "DestinationRule", CNN_DR), None),
    Case("skip-verify", A.skip_verify_any.ANALYZER,
         set_in(["spec", "trafficPolicy", "portLevelSettings", 0, "tls", "insecureSkipVerify"], True,
                "DestinationRule", CNN_DR),
         ("EG0112", f"DestinationRule default/{CNN_DR}",
          "spec.trafficPolicy.portLevelSettings[0].tls.insecureSkipVerify"), Severity.WARNING),
    Case("skip-verify/ok", A.skip_verify_any.ANALYZER, nothing, None),
    # IST0132
    # (as Istio's: only when the Gateway accepts none of the VirtualService's hosts)
    Case("vs-host-in-gateway", A.vs_host_in_gateway.ANALYZER,
         set_in(["spec", "hosts"], ["www.cnn.com"], "VirtualService"),
         ("IST0132", VSR, "spec.gateways[0]"), Severity.WARNING),
    Case("vs-host-in-gateway/ok", A.vs_host_in_gateway.ANALYZER,
         set_in(["spec", "servers", 0, "hosts"], ["*.cnn.com"], "Gateway"), None),
    # ... and, as Istio's, for a Gateway that does not exist (IST0101 as well)
    Case("vs-host-in-gateway/missing-gateway", A.vs_host_in_gateway.ANALYZER,
         set_in(["spec", "gateways", 0], "egress-typo", "VirtualService"),
         ("IST0132", VSR, "spec.gateways[0]"), Severity.WARNING),
    Case("vs-host-in-gateway/one-host-accepted", A.vs_host_in_gateway.ANALYZER,
         set_in(["spec", "hosts"], ["edition.cnn.com", "www.cnn.com"], "VirtualService"), None),
    # IST0145
    Case("conflicting-gateways", A.conflicting_gateways.ANALYZER,
         add(gateway("other", 80, "edition.cnn.com", {"mode": "ISTIO_MUTUAL"})), ("IST0145", GWR, "spec.servers[0]")),
    Case("conflicting-gateways/ok", A.conflicting_gateways.ANALYZER,
         add(gateway("other", 80, "www.example.com", {"mode": "ISTIO_MUTUAL"})), None),
    # IST0161
    Case("gateway-credential", A.gateway_credential.ANALYZER, gw_credential_server,
         ("IST0161", GWR, "spec.servers[1].tls.credentialName"),
         secrets=lambda p: [client_secret(p, "istio-system", "gw-cred", "expired")]),
    Case("gateway-credential/ok", A.gateway_credential.ANALYZER, gw_credential_server, None,
         secrets=lambda p: [client_secret(p, "istio-system", "gw-cred")]),
    # IST0162
    Case("gateway-port", A.gateway_port.ANALYZER, set_in(["spec", "servers", 0, "port", "number"], 8081, "Gateway"),
         ("IST0162", GWR, "spec.servers[0].port.number"), Severity.WARNING),
    Case("gateway-port/ok", A.gateway_port.ANALYZER, set_in(["spec", "servers", 0, "port", "number"], 8080, "Gateway"),
         None),
    # IST0173
    Case("subset-selects", A.subset_selects.ANALYZER,
         set_in(["spec", "subsets", 0, "labels"], {"istio": "ingressgateway"}, "DestinationRule", GW_DR),
         ("IST0173", f"DestinationRule default/{GW_DR}", "spec.subsets[0].labels")),
    Case("subset-selects/ok", A.subset_selects.ANALYZER,
         set_in(["spec", "subsets", 0, "labels"], {"istio": "egressgateway"}, "DestinationRule", GW_DR), None),
    # IST0174
    Case("destination-rule-host", A.destination_rule_host.ANALYZER,
         set_in(["spec", "host"], "edition.cnn.co", "DestinationRule", CNN_DR),
         ("IST0174", f"DestinationRule default/{CNN_DR}", "spec.host"), Severity.WARNING),
    Case("destination-rule-host/ok", A.destination_rule_host.ANALYZER,
         set_in(["spec", "host"], "*.cnn.com", "DestinationRule", CNN_DR), None),
    # IST0177
    Case("serviceentry-protocols", A.serviceentry_protocols.ANALYZER, add(service_entry("cnn-tls", 443, "TLS")),
         ("IST0177", "ServiceEntry default/cnn", "spec.ports[1].protocol"), Severity.WARNING),
    Case("serviceentry-protocols/ok", A.serviceentry_protocols.ANALYZER, add(service_entry("cnn-tls", 443, "HTTPS")),
         None),
    # EG0101
    Case("passthrough", A.passthrough_origination.ANALYZER,
         set_in(["spec", "servers", 0, "tls", "mode"], "PASSTHROUGH", "Gateway"),
         ("EG0101", GWR, "spec.servers[0].tls.mode")),
    Case("passthrough/ok", A.passthrough_origination.ANALYZER, nothing, None),
    # EG0102
    Case("subset-visibility", A.subset_visibility.ANALYZER, move("DestinationRule", GW_DR, "other"),
         ("EG0102", VSR, MESH_DEST + ".subset")),
    Case("subset-visibility/shadowed", A.subset_visibility.ANALYZER,
         chain(move("DestinationRule", GW_DR, "istio-system"),
               add({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "lb"},
                    "spec": {"host": "istio-egressgateway.istio-system.svc.cluster.local",
                             "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}})),
         ("EG0102", VSR, MESH_DEST + ".subset")),
    Case("subset-visibility/ok", A.subset_visibility.ANALYZER, move("DestinationRule", GW_DR, "istio-system"), None),
    # EG0104
    Case("tls-to-plaintext", A.tls_to_plaintext.ANALYZER, cnn_port(80), ("EG0104", VSR, GW_DEST)),
    Case("tls-to-plaintext/gateway", A.tls_to_plaintext.ANALYZER,
         gateway_server({"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["edition.cnn.com"]}),
         ("EG0104", VSR, MESH_DEST)),
    Case("tls-to-plaintext/ok", A.tls_to_plaintext.ANALYZER,
         chain(cnn_port(80), set_in(["spec", "ports", 0, "targetPort"], 443, "ServiceEntry")), None),
    # EG0105
    Case("plaintext-to-tls", A.plaintext_to_tls.ANALYZER, remove("DestinationRule", CNN_DR), ("EG0105", VSR, GW_DEST)),
    Case("plaintext-to-tls/gateway", A.plaintext_to_tls.ANALYZER, gw_dr_subset_tls({"mode": "DISABLE"}),
         ("EG0105", VSR, MESH_DEST)),
    Case("plaintext-to-tls/auto-mtls", A.plaintext_to_tls.ANALYZER,  # Istio's auto mTLS to ISTIO_MUTUAL servers
         chain(remove("DestinationRule", GW_DR), lambda d: mesh_route(d).pop("subset")), None),
    Case("plaintext-to-tls/simple-server", A.plaintext_to_tls.ANALYZER,  # no auto mTLS to a SIMPLE server
         chain(remove("DestinationRule", GW_DR), lambda d: mesh_route(d).pop("subset"),
               set_in(["spec", "servers", 0, "tls"], {"mode": "SIMPLE", "credentialName": "cnn-server"}, "Gateway")),
         ("EG0105", VSR, MESH_DEST)),
    Case("plaintext-to-tls/ok", A.plaintext_to_tls.ANALYZER, nothing, None),
    Case("plaintext-to-tls/no-cluster", A.plaintext_to_tls.ANALYZER, remove("DestinationRule", GW_DR), None),
    # EG0106
    Case("gateway-server-missing", A.gateway_server_missing.ANALYZER,
         set_in(["spec", "servers", 0, "port", "number"], 443, "Gateway"), ("EG0106", VSR, MESH_DEST)),
    Case("gateway-server-missing/ok", A.gateway_server_missing.ANALYZER,
         set_in(["spec", "servers", 0, "hosts"], ["*"], "Gateway"), None),
    # EG0107
    Case("gateway-server-unbound", A.gateway_server_unbound.ANALYZER,
         set_in(["spec", "servers", 0, "hosts"], ["www.example.com"], "Gateway"),
         ("EG0107", GWR, "spec.servers[0]"), Severity.WARNING),
    Case("gateway-server-unbound/ok", A.gateway_server_unbound.ANALYZER, nothing, None),
    # EG0108
    Case("certificate-expired", A.certificate_expiry.ANALYZER, nothing,
         ("EG0108", "Secret istio-system/client-credential", "data.tls.crt"),
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential", "expired")]),
    Case("certificate-not-yet-valid", A.certificate_expiry.ANALYZER, nothing,
         ("EG0108", "Secret istio-system/client-credential", "data.tls.crt"),
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential", "future")]),
    Case("certificate-expires-soon", A.certificate_expiry.ANALYZER, nothing,
         ("EG0108", "Secret istio-system/client-credential", "data.tls.crt"), Severity.WARNING,
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential", "soon")]),
    Case("certificate-expiry/ok", A.certificate_expiry.ANALYZER, nothing, None,
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential")]),
    # EG0109
    Case("client-credential", A.client_credential.ANALYZER, nothing,
         ("EG0109", f"DestinationRule istio-system/{NGINX_DR}", NGINX_CRED), scenario=mutual, mesh=mesh001,
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential", mismatched_key=True)]),
    Case("client-credential/ok", A.client_credential.ANALYZER, nothing, None, scenario=mutual, mesh=mesh001,
         secrets=lambda p: [client_secret(p, "istio-system", "client-credential")]),
]


@pytest.mark.parametrize("case", CASE_TABLE, ids=[c.id for c in CASE_TABLE])
def test_analyzer(case: Case, pki: Pki) -> None:
    docs = case.scenario()
    case.mutate(docs)
    resources = load(dump(docs)) + case.secrets(pki)
    found = run(resources, case.mesh(), (case.analyzer,))
    if case.expect is None:
        assert found == []
        return
    code, resource, fld = case.expect
    assert all(d.code == code for d in found), found
    hits = [d for d in found if (d.resource, d.field) == (resource, fld)]
    assert hits, found
    assert hits[0].severity is case.severity
    assert hits[0].file == "case.yaml" or resource.startswith("Secret")


def test_every_analyzer_has_a_trigger_case() -> None:
    from tests.unit.test_analyze_sidecar_authz import CASES as SIDECAR_AUTHZ_CASES

    triggered = {c.analyzer for c in CASE_TABLE if c.expect is not None}
    quiet = {c.analyzer for c in CASE_TABLE if c.expect is None}
    triggered |= {c.analyzer for c in SIDECAR_AUTHZ_CASES if c.expect}
    quiet |= {c.analyzer for c in SIDECAR_AUTHZ_CASES if not c.expect}
    assert set(az.ANALYZERS) == triggered == quiet


def test_registry_is_well_formed() -> None:
    for a in az.ANALYZERS:
        assert re.fullmatch(r"IST0\d{3}|EG01\d\d", a.code), a.code
        assert a.name and a.description and "\n" not in a.description


# --- messages Istio users know ------------------------------------------------------------------

def test_istio_message_wording(pki: Pki) -> None:
    docs = base()
    gw_route(docs)["host"] = "edition.cnn.comm"
    mesh_route(docs)["subset"] = "cnn2"
    doc(docs, "VirtualService")["spec"]["gateways"][0] = "egress-typo"
    messages = {d.message for d in run(load(dump(docs)))}
    assert 'Referenced host not found: "edition.cnn.comm"' in messages
    assert 'Referenced gateway not found: "egress-typo"' in messages
    assert ('Referenced host+subset in destinationrule not found: '
            '"istio-egressgateway.istio-system.svc.cluster.local+cnn2"') in messages


def test_conflicting_mesh_hosts_reported_on_each_virtual_service() -> None:
    docs = base() + [vs_cnn("cnn-2", ["mesh"])]
    found = run(load(dump(docs)), analyzers=(az.mesh_host_conflict.ANALYZER,))
    assert sorted(d.resource or "" for d in found) == ["VirtualService default/cnn-2", VSR]
    assert "define the same host */edition.cnn.com" in found[0].message


def test_credential_in_gateway_namespace_is_what_counts(pki: Pki) -> None:
    """The MUTUAL doc's warning: the Secret must be in the gateway's namespace (istio-system),
    whatever namespace the DestinationRule is in (here the service's, which the gateway reads)."""
    docs = mutual()
    doc(docs, "DestinationRule", NGINX_DR)["metadata"]["namespace"] = "mesh-external"
    good = run(load(dump(docs)) + [client_secret(pki, "istio-system", "client-credential")], mesh001())
    assert errors(good) == []
    bad = run(load(dump(docs)) + [client_secret(pki, "default", "client-credential")], mesh001())
    assert [d.code for d in errors(bad)] == ["EG0103"]
    assert '"istio-system", where gateway istio-egressgateway.istio-system reads it' in bad[0].message


def test_origination_rule_the_gateway_cannot_see() -> None:
    """The MUTUAL rule applied without `-n istio-system`: the gateway never finds it and sends
    plain HTTP to nginx's TLS port; the message names the rule it does not see."""
    docs = mutual()
    doc(docs, "DestinationRule", NGINX_DR)["metadata"]["namespace"] = "default"
    found = errors(run(load(dump(docs)), mesh001()))
    assert [(d.code, d.resource, d.field) for d in found] == [
        ("EG0105", "VirtualService default/direct-nginx-through-egress-gateway", GW_DEST)]
    assert f"DestinationRule default/{NGINX_DR} for this host is not visible to it" in found[0].message


def test_sidecar_only_destination_rule_does_not_need_the_secret(pki: Pki) -> None:
    """The sleep sidecar sees the MUTUAL rule (root namespace) but routes my-nginx to the
    gateway: only the gateway loads client-credential."""
    found = run(load(dump(mutual())) + [client_secret(pki, "istio-system", "client-credential")], mesh001())
    assert clean(found) == []


def test_clock_is_an_argument(pki: Pki) -> None:
    resources = [client_secret(pki, "istio-system", "client-credential")]
    assert run(resources, analyzers=(az.certificate_expiry.ANALYZER,)) == []
    later = run(resources, analyzers=(az.certificate_expiry.ANALYZER,), now=_day(2026, 2, 1))
    assert [(d.code, d.severity) for d in later] == [("EG0108", Severity.ERROR)]


def test_sorted_by_file_and_line_without_duplicates() -> None:
    docs = base()
    gw_route(docs)["host"] = "edition.cnn.comm"
    doc(docs, "VirtualService")["spec"]["gateways"][0] = "egress-typo"
    doc(docs, "Gateway")["spec"]["selector"] = {"istio": "nothing"}
    found = run(load(dump(docs)))
    keys = [(d.file, d.line) for d in found]
    assert keys == sorted(keys)
    assert len(found) == len(set(found))


# --- Istio's documented configurations -----------------------------------------------------------

def _load_files(*names: tuple[str, str]) -> list[Resource]:
    """The documents through exitgate's own loader, as `exitgate apply -n NS -f FILE` reads them."""
    out = []
    for name, ns in names:
        loaded = load_text((CASES / name).read_text(), name, ns)
        assert loaded.diagnostics == [] and loaded.resources, loaded.diagnostics
        out += loaded.resources
    return out


def test_examples_analyze_clean_with_the_real_loader() -> None:
    loaded = load_paths([EXAMPLES])
    assert loaded.ok, loaded.diagnostics
    assert clean(run(loaded.resources)) == []


def test_istio_tls_origination_simple() -> None:
    found = run(_load_files(("istio-001-simple.yaml", "default")))
    assert clean(found) == []
    # Istio's own task warns so under istioctl analyze: SIMPLE at port 443 without caCertificates.
    assert [(d.code, d.resource) for d in found] == [("IST0129", "DestinationRule default/originate-tls-for-edition-cnn-com")]
    assert found[0].message.endswith("at port number:443")


def test_istio_tls_origination_mutual(pki: Pki) -> None:
    resources = _load_files(("istio-001-mutual.yaml", "default"), ("istio-001-mutual.istio-system.yaml", "istio-system"))
    nginx_cert, nginx_key = pki.leaf("my-nginx.mesh-external.svc.cluster.local", _day(2025, 1, 1), _day(2026, 1, 1))
    secrets = [
        secret("mesh-external", "nginx-server-certs", {"tls.crt": nginx_cert, "tls.key": nginx_key}),
        secret("mesh-external", "nginx-ca-certs", {"example.com.crt": pki.root}),
        client_secret(pki, "istio-system", "client-credential"),
    ]
    assert clean(run(resources + secrets, mesh001())) == []


def test_istio_tls_origination_mutual_without_the_secret_says_so() -> None:
    resources = _load_files(("istio-001-mutual.yaml", "default"), ("istio-001-mutual.istio-system.yaml", "istio-system"))
    found = errors(run(resources, mesh001()))
    assert [(d.code, d.message) for d in found] == [("IST0101", 'Referenced credentialName not found: "client-credential"')]
    assert found[0].file == "istio-001-mutual.istio-system.yaml"


@pytest.mark.parametrize("step", ["step3", "step4"])
def test_asm_egress_mtls_origination(step: str, pki: Pki) -> None:
    resources = _load_files(("asm-002-base.yaml", "default"), (f"asm-002-{step}.yaml", "default"))
    found = run(resources + [client_secret(pki, "istio-system", "test.client")])
    # The guide relies on auto mTLS between sidecar and gateway (no DestinationRule for the
    # gateway host), which exitgate does as Istio does.
    assert clean(found) == []


def test_poc_custom_gateway_namespace() -> None:
    mesh, diags = load_mesh(CASES / "poc-003.mesh.yaml")
    assert mesh is not None, diags
    assert clean(run(_load_files(("poc-003.yaml", "default")), mesh)) == []


# --- exact lines ---------------------------------------------------------------------------------

def test_lines_point_at_the_field(tmp_path: Path) -> None:
    text = (CASES / "istio-001-simple.yaml").read_text().replace(
        "        host: edition.cnn.com\n        port:\n          number: 443",
        "        host: edition.cnn.comm\n        port:\n          number: 443")
    path = tmp_path / "cnn.yaml"
    path.write_text(text)
    resources = load(text, str(path))
    vs = next(r for r in resources if r.kind == "VirtualService")
    found = az.analyze(resources, MeshConfig(), now=NOW, analyzers=(az.destination_host.ANALYZER,),
                       locate=FileLocator())
    assert len(found) == 1
    line = text.splitlines()[found[0].line - 1 if found[0].line else 0]
    assert line.strip() == "host: edition.cnn.comm"
    assert vs.source is not None and found[0].line is not None and found[0].line > vs.source.line
    # Without a locator: the document's line.
    plain = az.analyze(resources, MeshConfig(), now=NOW, analyzers=(az.destination_host.ANALYZER,))
    assert plain[0].line == vs.source.line


def test_locator_falls_back_to_the_document_line(tmp_path: Path) -> None:
    locate = FileLocator()
    assert locate(str(tmp_path / "missing.yaml"), 7, ("spec", "host")) == 7
    p = tmp_path / "a.yaml"
    p.write_text("apiVersion: v1\nkind: X\nspec:\n  host: a\n")
    assert locate(str(p), 1, ("spec", "host")) == 4
    assert locate(str(p), 1, ("spec", "nothere")) == 3


def test_diagnostic_without_source() -> None:
    r = load(dump(base()))
    bare = [Resource(x.api_version, x.kind, x.namespace, x.name, x.spec, x.raw) for x in r]
    doc_gw = next(x for x in bare if x.kind == "Gateway")
    assert doc_gw.source is None
    finding = az.Finding("IST0101", Severity.ERROR, "m", doc_gw, ("spec", "selector"))
    d = az.to_diagnostic(finding, FileLocator())
    assert (d.file, d.line, d.resource, d.field) == (None, None, GWR, "spec.selector")


def test_unknown_keys_are_ignored_by_expiry(pki: Pki) -> None:
    s = secret("default", "misc", {"config.json": b"{}", "tls.crt": b"not a certificate"})
    assert run([s], analyzers=(az.certificate_expiry.ANALYZER,)) == []


def test_now_may_be_naive_utc(pki: Pki) -> None:
    resources = [client_secret(pki, "istio-system", "c", "soon")]
    naive = NOW.replace(tzinfo=None)
    found = az.analyze(resources, MeshConfig(), now=naive, analyzers=(az.certificate_expiry.ANALYZER,))
    assert [d.severity for d in found] == [Severity.WARNING]
    assert "in 13 days" in found[0].message or "in 14 days" in found[0].message
    assert timedelta(days=30) == az.certificate_expiry.EXPIRY_WARNING


KITCHEN_SINK = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: apps}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 8080, name: http, protocol: HTTP}]
  resolution: DNS
  exportTo: ["."]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: apps}
spec:
  hosts: [db.internal]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: all, namespace: apps}
spec:
  selector: {}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["./*.example.com", "*/other.example.com"]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-only, namespace: apps}
spec:
  hosts: ["*.example.com"]
  gateways: [all, mesh, missing/gw]
  tls:
  - match: [{sniHosts: [a.example.com], port: 443}]
    route: [{destination: {host: a.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: short, namespace: apps}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http:
  - match: [{uri: {prefix: /}}, {port: 8080, gateways: [mesh]}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: x.example.com}, weight: 50}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wild, namespace: apps}
spec:
  host: "*.example.com"
  exportTo: ["."]
  trafficPolicy:
    tls: {mode: SIMPLE}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 8080}
        tls: {mode: MUTUAL, credentialName: nowhere}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: apps}
spec:
  host: db.internal
  subsets: [{name: v2, labels: {version: v2}}]
"""


def test_odd_configurations_do_not_break_analyzers() -> None:
    mesh = MeshConfig.model_validate({"workloads": [{"name": "app", "namespace": "apps"}]})
    found = run(load(KITCHEN_SINK), mesh)
    assert all(isinstance(d, Diagnostic) for d in found)
    codes = {d.code for d in found}
    assert {"IST0101", "IST0173"} <= codes
    assert run([], MeshConfig()) == []
