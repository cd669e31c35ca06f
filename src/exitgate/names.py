"""The one place where exitgate builds and parses names: xDS resources, SNI, SPIFFE IDs, secrets.

Istio's names are kept on purpose (``outbound|443||edition.cnn.com``, ``kubernetes://name``,
``spiffe://cluster.local/ns/NS/sa/SA``): users grep logs and metrics for them. Every builder here
has a parser, and the two round-trip (see tests/unit/test_names.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "cluster.local"
DEFAULT_DOMAIN_SUFFIX = "svc.cluster.local"

# SDS names Istio uses for the workload's own certificate and for the mesh root.
WORKLOAD_CERT_SECRET = "default"
ROOT_CA_SECRET = "ROOTCA"
# The SDS name under which the proxy's system trust store (the mesh file's) is served.
SYSTEM_CA_SECRET = "file-root:<system>"  # = file_root_secret("<system>")

CREDENTIAL_PREFIX = "kubernetes://"
CACERT_SUFFIX = "-cacert"

# The route configuration served to sidecars' forward-proxy listener (Istio's RDSHttpProxy).
HTTP_PROXY_ROUTE = "http_proxy"

# Istio's catch-all names for hosts no service declares: the virtual host and route of each
# outbound policy, and the clusters (ALLOW_ANY goes to PassthroughCluster; BlackHoleCluster has
# no endpoints). Users grep access logs for them.
PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
ALLOW_ANY_ROUTE = "allow_any"
BLOCK_ALL_ROUTE = "block_all"

# Transparent capture, Istio's ports and names: outbound capture (virtualOutbound) and the DNS
# proxy, inside the workload's network namespace.
CAPTURE_PORT = 15001
DNS_CAPTURE_PORT = 15053
VIRTUAL_OUTBOUND = "virtualOutbound"
DNS_CAPTURE_LISTENER = "dns_capture"


_PORT = re.compile(r"[1-9][0-9]{0,4}")
# SPIFFE ID syntax (spiffe.io standard, section 2): no port, user info, query or fragment.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


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
    # The port must be written as cluster_name writes it: int() alone would take " 443", "4_43", "-1".
    if (len(parts) != 4 or parts[0] not in ("outbound", "inbound") or not parts[3]
            or not _PORT.fullmatch(parts[1]) or int(parts[1]) > 65535):
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
    if (not _TRUST_DOMAIN.fullmatch(td) or len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa"
            or not all(_PATH_SEGMENT.fullmatch(p) and p not in (".", "..") for p in (parts[1], parts[3]))):
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
        name, is_ca = name[: -len(CACERT_SUFFIX)], True
    else:
        is_ca = False
    if not name:
        raise ValueError(f"credential SDS name without a secret name: {sds_name!r}")
    return name, is_ca


FILE_CERT_PREFIX = "file-cert:"
FILE_ROOT_PREFIX = "file-root:"


def file_cert_secret(cert_path: str, key_path: str) -> str:
    """SDS name of a client certificate and key read from files by the control plane, Istio's
    ``file-cert:CERT~KEY``."""
    return f"{FILE_CERT_PREFIX}{cert_path}~{key_path}"


def file_root_secret(ca_path: str, crl_path: str | None = None) -> str:
    """SDS name of CA certificates read from a file (``file-root:CA``), with a CRL file when
    given (``file-root:CA~CRL``)."""
    return f"{FILE_ROOT_PREFIX}{ca_path}" + (f"~{crl_path}" if crl_path else "")


def parse_file_secret(sds_name: str) -> tuple[str, str, str | None]:
    """``file-cert:C~K`` -> ("cert", C, K); ``file-root:CA[~CRL]`` -> ("root", CA, CRL|None)."""
    for prefix, kind in ((FILE_CERT_PREFIX, "cert"), (FILE_ROOT_PREFIX, "root")):
        if sds_name.startswith(prefix):
            first, sep, second = sds_name[len(prefix):].partition("~")
            if not first or (kind == "cert" and not second) or (sep and not second):
                break
            return kind, first, second or None
    raise ValueError(f"not a file secret SDS name: {sds_name!r}")


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
    # The last part is derived from the namespace; one that disagrees would not round-trip.
    if not parts[1] or not name or not ns or parts[3] != f"{ns}.{DEFAULT_DOMAIN_SUFFIX}":
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


# --- RBAC policy names (AuthorizationPolicy rules) -------------------------------------------------
# Istio's ``ns[NAMESPACE]-policy[NAME]-rule[INDEX]``: Envoy reports a denial as
# ``rbac_access_denied_matched_policy[ns[istio-system]-policy[deny-cnn]-rule[0]]`` in
# %RESPONSE_CODE_DETAILS%, so users find the rule that refused them. A CUSTOM policy exitgate
# cannot delegate is enforced as a DENY under Istio's name for that case:
# ``istio-ext-authz-PROVIDER-ns[..]-policy[..]-rule[..]-deny-due-to-bad-CUSTOM-action``.

EXT_AUTHZ_PREFIX = "istio-ext-authz"
BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"
RBAC_DENIED_DETAILS_PREFIX = "rbac_access_denied_matched_policy"

# Kubernetes names: a namespace is a DNS label, a policy name a DNS subdomain; neither has brackets,
# which is what makes the name parse back unambiguously.
_K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PROVIDER = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_RBAC_NAME = re.compile(r"ns\[(?P<ns>[^\[\]]+)\]-policy\[(?P<name>[^\[\]]+)\]-rule\[(?P<rule>0|[1-9][0-9]{0,5})\]")


@dataclass(frozen=True)
class RbacPolicyName:
    namespace: str
    name: str
    rule: int
    # Set for a CUSTOM policy's rule enforced as a DENY (Istio's bad-CUSTOM-action form).
    custom_provider: str | None = None

    def __str__(self) -> str:
        base = f"ns[{self.namespace}]-policy[{self.name}]-rule[{self.rule}]"
        if self.custom_provider is None:
            return base
        return f"{EXT_AUTHZ_PREFIX}-{self.custom_provider}-{base}{BAD_CUSTOM_SUFFIX}"


def rbac_policy_name(namespace: str, name: str, rule: int, custom_provider: str | None = None) -> str:
    parsed = RbacPolicyName(namespace, name, rule, custom_provider)
    # Refuse what would not parse back (a bracket in a name, a negative index).
    if (not _K8S_LABEL.fullmatch(namespace) or not _K8S_SUBDOMAIN.fullmatch(name) or not 0 <= rule <= 999999
            or (custom_provider is not None and not _PROVIDER.fullmatch(custom_provider))):
        raise ValueError(f"cannot name RBAC policy for {namespace}/{name} rule {rule}")
    return str(parsed)


def parse_rbac_policy_name(value: str) -> RbacPolicyName:
    provider: str | None = None
    body = value
    if value.startswith(EXT_AUTHZ_PREFIX + "-"):
        if not value.endswith(BAD_CUSTOM_SUFFIX):
            raise ValueError(f"not an RBAC policy name: {value!r}")
        body = value[len(EXT_AUTHZ_PREFIX) + 1:-len(BAD_CUSTOM_SUFFIX)]
        provider, sep, body = body.partition("-ns[")
        if not sep:
            raise ValueError(f"not an RBAC policy name: {value!r}")
        body = "ns[" + body
    m = _RBAC_NAME.fullmatch(body)
    if m is None:
        raise ValueError(f"not an RBAC policy name of the form ns[NS]-policy[NAME]-rule[N]: {value!r}")
    try:
        built = rbac_policy_name(m["ns"], m["name"], int(m["rule"]), provider)
    except ValueError:
        raise ValueError(f"not an RBAC policy name: {value!r}") from None
    if built != value:
        raise ValueError(f"not an RBAC policy name: {value!r}")
    return RbacPolicyName(m["ns"], m["name"], int(m["rule"]), provider)


def rbac_denied_details(policy: str) -> str:
    """%RESPONSE_CODE_DETAILS% of a request a DENY policy refused (what Envoy writes)."""
    return f"{RBAC_DENIED_DETAILS_PREFIX}[{policy}]"


def parse_rbac_denied_details(details: str) -> RbacPolicyName | None:
    """The policy named in a denial's %RESPONSE_CODE_DETAILS%; None for an ALLOW policy's
    refusal (``rbac_access_denied_matched_policy[none]``) or any other details."""
    prefix = RBAC_DENIED_DETAILS_PREFIX + "["
    if not details.startswith(prefix) or not details.endswith("]") or details == prefix + "none]":
        return None
    return parse_rbac_policy_name(details[len(prefix):-1])


# Istio's name for Gateways it generates from the Kubernetes Gateway API: a VirtualService that
# names one (``ns/gw~istio-autogenerated-k8s-gateway~x``) refers to Istio's internals, and Istio's
# analyzers leave such a reference alone (``kube.IsInternalGatewayReference``).
KUBERNETES_GATEWAY_NAME = "istio-autogenerated-k8s-gateway"


def is_internal_gateway_ref(ref: str) -> bool:
    return f"~{KUBERNETES_GATEWAY_NAME}~" in ref.split("/", 1)[-1]
