"""The one place where exitgate builds and parses names: xDS resources, SNI, SPIFFE IDs, secrets.

Istio's names are kept on purpose (``outbound|443||edition.cnn.com``, ``kubernetes://name``,
``spiffe://cluster.local/ns/NS/sa/SA``): users grep logs and metrics for them. Every builder here
has a parser, and the two round-trip (see tests/unit/test_names.py).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_DOMAIN_SUFFIX = "svc.cluster.local"

# SDS names Istio uses for the workload's own certificate and for the mesh root.
WORKLOAD_CERT_SECRET = "default"
ROOT_CA_SECRET = "ROOTCA"
# The SDS name under which the proxy's system trust store (the mesh file's) is served.
SYSTEM_CA_SECRET = "file-root:system"

CREDENTIAL_PREFIX = "kubernetes://"
CACERT_SUFFIX = "-cacert"

# The route configuration served to sidecars' forward-proxy listener (Istio's RDSHttpProxy).
HTTP_PROXY_ROUTE = "http_proxy"


@dataclass(frozen=True)
class ClusterName:
    """``direction|port|subset|host``, Istio's cluster naming."""

    direction: str
    port: int
    subset: str
    host: str

    def __str__(self) -> str:
        return f"{self.direction}|{self.port}|{self.subset}|{self.host}"


def cluster_name(host: str, port: int, subset: str = "", direction: str = "outbound") -> str:
    return str(ClusterName(direction, port, subset, host))


def parse_cluster_name(name: str) -> ClusterName:
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in ("outbound", "inbound"):
        raise ValueError(f"not an Istio cluster name: {name!r}")
    return ClusterName(parts[0], int(parts[1]), parts[2], parts[3])


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def spiffe_id(namespace: str, service_account: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    return str(SpiffeId(trust_domain, namespace, service_account))


def parse_spiffe_id(uri: str) -> SpiffeId:
    prefix = "spiffe://"
    if not uri.startswith(prefix):
        raise ValueError(f"not a SPIFFE ID: {uri!r}")
    td, _, path = uri[len(prefix):].partition("/")
    parts = path.split("/")
    if not td or len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa" or not parts[1] or not parts[3]:
        raise ValueError(f"not a SPIFFE ID of the form spiffe://TD/ns/NS/sa/SA: {uri!r}")
    return SpiffeId(td, parts[1], parts[3])


def credential_secret(name: str) -> str:
    """SDS name of a ``credentialName`` Secret's certificate and key."""
    return f"{CREDENTIAL_PREFIX}{name}"


def credential_cacert_secret(name: str) -> str:
    """SDS name of a ``credentialName`` Secret's CA certificate (Istio's ``-cacert`` convention)."""
    return f"{CREDENTIAL_PREFIX}{name}{CACERT_SUFFIX}"


def parse_credential_secret(sds_name: str) -> tuple[str, bool]:
    """Return (secret name, is the CA part) of a ``kubernetes://`` SDS name."""
    if not sds_name.startswith(CREDENTIAL_PREFIX):
        raise ValueError(f"not a credential SDS name: {sds_name!r}")
    name = sds_name[len(CREDENTIAL_PREFIX):]
    if name.endswith(CACERT_SUFFIX):
        return name[: -len(CACERT_SUFFIX)], True
    return name, False


def file_secret(kind: str, path: str) -> str:
    """SDS name for a certificate read from a file path by the control plane (Istio: ``file-cert:``)."""
    return f"file-{kind}:{path}"


def service_fqdn(name: str, namespace: str, suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    return f"{name}.{namespace}.{suffix}"


def parse_service_fqdn(host: str, suffix: str = DEFAULT_DOMAIN_SUFFIX) -> tuple[str, str] | None:
    """``name.ns.svc.cluster.local`` -> (name, ns); None for any other host."""
    tail = "." + suffix
    if not host.endswith(tail):
        return None
    parts = host[: -len(tail)].split(".")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


@dataclass(frozen=True)
class NodeId:
    """Istio's proxy node ID: ``role~ip~name.namespace~namespace.svc.cluster.local``."""

    role: str  # "sidecar" or "router"
    ip: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.role}~{self.ip}~{self.name}.{self.namespace}~{self.namespace}.{DEFAULT_DOMAIN_SUFFIX}"


def node_id(role: str, ip: str, name: str, namespace: str) -> str:
    return str(NodeId(role, ip, name, namespace))


def parse_node_id(value: str) -> NodeId:
    parts = value.split("~")
    if len(parts) != 4 or parts[0] not in ("sidecar", "router"):
        raise ValueError(f"not a node ID: {value!r}")
    name, _, ns = parts[2].rpartition(".")
    if not name or not ns:
        raise ValueError(f"not a node ID: {value!r}")
    return NodeId(parts[0], parts[1], name, ns)


def listener_name(address: str, port: int) -> str:
    return f"{address}_{port}"


def gateway_route_name(protocol: str, port: int, port_name: str, gateway: str, namespace: str) -> str:
    """Istio's route-configuration name for a gateway server: ``http.8080`` for plain HTTP,
    ``https.443.NAME.GATEWAY.NS`` for a server that terminates TLS."""
    if protocol.upper() in ("HTTP", "HTTP2", "GRPC"):
        return f"http.{port}"
    return f"https.{port}.{port_name}.{gateway}.{namespace}"


def virtual_host_name(host: str, port: int) -> str:
    return f"{host}:{port}"
