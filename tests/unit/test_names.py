"""names.py: every builder has a parser and the two round-trip; anything else is refused with
ValueError (or None where the parser's contract is "not one of ours")."""

from __future__ import annotations

import pytest

from exitgate import names
from exitgate.names import ClusterName, NodeId, SpiffeId

# --- cluster names: direction|port|subset|host -----------------------------------------------

CLUSTERS = [
    ("edition.cnn.com", 443, "", "outbound"),
    ("edition.cnn.com", 80, "", "outbound"),
    ("istio-egressgateway.istio-system.svc.cluster.local", 80, "cnn", "outbound"),
    ("*.example.com", 8443, "v1", "outbound"),
    ("sleep.default.svc.cluster.local", 65535, "", "inbound"),
    ("10.0.0.1", 1, "canary-2", "inbound"),
]


@pytest.mark.parametrize(("host", "port", "subset", "direction"), CLUSTERS)
def test_cluster_name_round_trips(host: str, port: int, subset: str, direction: str) -> None:
    name = names.cluster_name(host, port, subset, direction)
    parsed = names.parse_cluster_name(name)
    assert parsed == ClusterName(direction, port, subset, host)
    assert str(parsed) == name
    assert names.cluster_name(parsed.host, parsed.port, parsed.subset, parsed.direction) == name


def test_cluster_name_is_istios_format() -> None:
    assert names.cluster_name("edition.cnn.com", 443) == "outbound|443||edition.cnn.com"
    assert names.cluster_name("gw.istio-system.svc.cluster.local", 80, "cnn") == "outbound|80|cnn|gw.istio-system.svc.cluster.local"


@pytest.mark.parametrize("bad", [
    "",
    "edition.cnn.com",
    "outbound|443|edition.cnn.com",
    "outbound|443||edition.cnn.com|extra",
    "outbund|443||edition.cnn.com",
    "OUTBOUND|443||edition.cnn.com",
    "outbound|https||edition.cnn.com",
    "outbound|||edition.cnn.com",
    "outbound|443||",
    "outbound|-1||edition.cnn.com",
    "outbound|0||edition.cnn.com",
    "outbound|65536||edition.cnn.com",
    "outbound| 443||edition.cnn.com",
    "outbound|4_43||edition.cnn.com",
    "outbound|0443||edition.cnn.com",
    "outbound|+443||edition.cnn.com",
])
def test_parse_cluster_name_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_cluster_name(bad)


# --- SPIFFE IDs ------------------------------------------------------------------------------

SPIFFE = [
    ("default", "sleep", "cluster.local"),
    ("istio-system", "istio-egressgateway-service-account", "cluster.local"),
    ("ns-1", "sa.with.dots", "example.org"),
    ("a", "b", "td_with-underscore.example"),
]


@pytest.mark.parametrize(("namespace", "sa", "td"), SPIFFE)
def test_spiffe_id_round_trips(namespace: str, sa: str, td: str) -> None:
    uri = names.spiffe_id(namespace, sa, td)
    assert uri == f"spiffe://{td}/ns/{namespace}/sa/{sa}"
    parsed = names.parse_spiffe_id(uri)
    assert parsed == SpiffeId(td, namespace, sa)
    assert str(parsed) == uri


def test_spiffe_id_default_trust_domain() -> None:
    assert names.spiffe_id("default", "sleep") == "spiffe://cluster.local/ns/default/sa/sleep"


@pytest.mark.parametrize("bad", [
    "",
    "cluster.local/ns/default/sa/sleep",
    "spiffe:/cluster.local/ns/default/sa/sleep",
    "SPIFFE://cluster.local/ns/default/sa/sleep",
    "https://cluster.local/ns/default/sa/sleep",
    "spiffe://",
    "spiffe:///ns/default/sa/sleep",
    "spiffe://cluster.local",
    "spiffe://cluster.local/",
    "spiffe://cluster.local/ns/default",
    "spiffe://cluster.local/ns//sa/sleep",
    "spiffe://cluster.local/ns/default/sa/",
    "spiffe://cluster.local/ns/default/sa/sleep/",
    "spiffe://cluster.local/ns/default/sa/sleep/extra",
    "spiffe://cluster.local/NS/default/sa/sleep",
    "spiffe://cluster.local/ns/default/serviceaccount/sleep",
    "spiffe://cluster.local/sa/sleep/ns/default",
    # Not SPIFFE IDs by the SPIFFE standard: the CA relies on the parser to refuse them.
    "spiffe://cluster.local/ns/default/sa/sleep?x=1",
    "spiffe://cluster.local/ns/default/sa/sleep#frag",
    "spiffe://cluster.local:8443/ns/default/sa/sleep",
    "spiffe://user@cluster.local/ns/default/sa/sleep",
    "spiffe://Cluster.Local/ns/default/sa/sleep",
    "spiffe://cluster.local/ns/../sa/sleep",
    "spiffe://cluster.local/ns/default/sa/.",
    "spiffe://cluster.local/ns/default/sa/sle%20ep",
    "spiffe://cluster.local/ns/default/sa/sle ep",
])
def test_parse_spiffe_id_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_spiffe_id(bad)


@pytest.mark.parametrize(("namespace", "sa"), [("default", "a/b"), ("a/sa/b", "c"), ("", "sleep"), ("default", "")])
def test_spiffe_builder_output_with_bad_parts_does_not_parse_back_to_the_same_identity(namespace: str, sa: str) -> None:
    uri = names.spiffe_id(namespace, sa)
    try:
        parsed = names.parse_spiffe_id(uri)
    except ValueError:
        return
    assert parsed != SpiffeId(names.DEFAULT_TRUST_DOMAIN, namespace, sa)


# --- credential (SDS) secret names -----------------------------------------------------------


@pytest.mark.parametrize("secret", ["client-credential", "cnn-tls", "a", "x.y.z", "my-cacert-store"])
def test_credential_secret_round_trips(secret: str) -> None:
    assert names.credential_secret(secret) == f"kubernetes://{secret}"
    assert names.credential_cacert_secret(secret) == f"kubernetes://{secret}-cacert"
    assert names.parse_credential_secret(names.credential_secret(secret)) == (secret, False)
    assert names.parse_credential_secret(names.credential_cacert_secret(secret)) == (secret, True)


@pytest.mark.parametrize("bad", [
    "",
    "client-credential",
    "kubernetes:/client-credential",
    "file-cert:/etc/certs/cert.pem",
    "default",
    "ROOTCA",
    "kubernetes://",
    "kubernetes://-cacert",
])
def test_parse_credential_secret_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_credential_secret(bad)


# --- file (SDS) secret names ------------------------------------------------------------------


@pytest.mark.parametrize(("cert", "key"), [
    ("/etc/certs/cert.pem", "/etc/certs/key.pem"), ("client.crt", "client.key"), ("/a b/c.pem", "/a b/k.pem")])
def test_file_cert_secret_round_trips(cert: str, key: str) -> None:
    sds = names.file_cert_secret(cert, key)
    assert sds == f"file-cert:{cert}~{key}"
    assert names.parse_file_secret(sds) == ("cert", cert, key)


@pytest.mark.parametrize(("ca", "crl"), [
    ("/etc/ssl/certs/ca-certificates.crt", None), ("/etc/certs/root.pem", "/etc/certs/root.crl"), ("ca.pem", None)])
def test_file_root_secret_round_trips(ca: str, crl: str | None) -> None:
    sds = names.file_root_secret(ca, crl)
    assert sds == f"file-root:{ca}" + (f"~{crl}" if crl else "")
    assert names.parse_file_secret(sds) == ("root", ca, crl)


@pytest.mark.parametrize("bad", [
    "",
    "/etc/certs/cert.pem",
    "file-cert:",
    "file-cert:/etc/certs/cert.pem",
    "file-cert:/etc/certs/cert.pem~",
    "file-cert:~/etc/certs/key.pem",
    "file-root:",
    "file-root:/etc/certs/root.pem~",
    "file-key:/etc/certs/key.pem",
    "kubernetes://client-credential",
])
def test_parse_file_secret_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_file_secret(bad)


def test_sds_names_of_different_kinds_do_not_parse_as_each_other() -> None:
    cred = names.credential_secret("cnn")
    root = names.file_root_secret("/etc/ssl/ca.pem")
    with pytest.raises(ValueError):
        names.parse_file_secret(cred)
    with pytest.raises(ValueError):
        names.parse_credential_secret(root)
    for fixed in (names.WORKLOAD_CERT_SECRET, names.ROOT_CA_SECRET):
        with pytest.raises(ValueError):
            names.parse_credential_secret(fixed)
        with pytest.raises(ValueError):
            names.parse_file_secret(fixed)


# --- node IDs --------------------------------------------------------------------------------

NODES = [
    ("sidecar", "10.0.0.1", "sleep-5b7d6f8c9-abcde", "default"),
    ("router", "127.0.0.1", "istio-egressgateway-0", "istio-system"),
    ("sidecar", "::1", "sleep", "ns-1"),
    ("router", "192.168.1.10", "name.with.dots", "egress"),
]


@pytest.mark.parametrize(("role", "ip", "name", "namespace"), NODES)
def test_node_id_round_trips(role: str, ip: str, name: str, namespace: str) -> None:
    value = names.node_id(role, ip, name, namespace)
    assert value == f"{role}~{ip}~{name}.{namespace}~{namespace}.svc.cluster.local"
    parsed = names.parse_node_id(value)
    assert parsed == NodeId(role, ip, name, namespace)
    assert str(parsed) == value


@pytest.mark.parametrize("bad", [
    "",
    "sleep",
    "sidecar~10.0.0.1~sleep.default",
    "sidecar~10.0.0.1~sleep.default~default.svc.cluster.local~x",
    "gateway~10.0.0.1~sleep.default~default.svc.cluster.local",
    "sidecar~10.0.0.1~sleep~default.svc.cluster.local",
    "sidecar~10.0.0.1~.default~default.svc.cluster.local",
    "sidecar~10.0.0.1~sleep.~.svc.cluster.local",
    "sidecar~~sleep.default~default.svc.cluster.local",
    "sidecar~10.0.0.1~sleep.default~other.svc.cluster.local",
    "sidecar~10.0.0.1~sleep.default~default",
])
def test_parse_node_id_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        names.parse_node_id(bad)


# --- service FQDNs ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "namespace"), [
    ("istio-egressgateway", "istio-system"), ("sleep", "default"), ("a", "b"), ("svc", "svc")])
def test_service_fqdn_round_trips(name: str, namespace: str) -> None:
    host = names.service_fqdn(name, namespace)
    assert host == f"{name}.{namespace}.svc.cluster.local"
    assert names.parse_service_fqdn(host) == (name, namespace)


def test_service_fqdn_with_another_suffix_round_trips() -> None:
    host = names.service_fqdn("gw", "egress", suffix="svc.corp.internal")
    assert host == "gw.egress.svc.corp.internal"
    assert names.parse_service_fqdn(host, suffix="svc.corp.internal") == ("gw", "egress")
    assert names.parse_service_fqdn(host) is None


@pytest.mark.parametrize("host", [
    "",
    "edition.cnn.com",
    "svc.cluster.local",
    ".svc.cluster.local",
    "sleep.svc.cluster.local",
    "a.b.c.svc.cluster.local",
    ".default.svc.cluster.local",
    "sleep..svc.cluster.local",
    "sleep.default.svc.cluster.local.",
    "sleep.defaultsvc.cluster.local",
    "*.default.svc.cluster.local.evil.com",
])
def test_parse_service_fqdn_returns_none_for_other_hosts(host: str) -> None:
    assert names.parse_service_fqdn(host) is None


# --- the rest --------------------------------------------------------------------------------


def test_listener_and_virtual_host_names() -> None:
    assert names.listener_name("0.0.0.0", 8080) == "0.0.0.0_8080"
    assert names.virtual_host_name("edition.cnn.com", 80) == "edition.cnn.com:80"


@pytest.mark.parametrize(("protocol", "expected"), [
    ("HTTP", "http.80"),
    ("http2", "http.80"),
    ("GRPC", "http.80"),
    ("HTTPS", "https.80.https-port-for-tls-origination.istio-egressgateway.istio-system"),
])
def test_gateway_route_name(protocol: str, expected: str) -> None:
    assert names.gateway_route_name(protocol, 80, "https-port-for-tls-origination", "istio-egressgateway",
                                    "istio-system") == expected
