"""The Kubernetes objects Istio users keep next to their Istio configuration: Namespace,
ServiceAccount, Service, Deployment and Pod (and ``v1 List``, which the loader unpacks).

They are the inventory (``exitgate.inventory``): a Deployment or Pod declares a workload with its
sidecar, or a gateway, and a Service the name and ports it answers as; the analyzers read their
labels, selectors and ports as Istio's read them from the cluster.

The fields exitgate reads are typed and checked with Kubernetes' rules (names, labels,
selectors, ports). A pod template holds far more than exitgate acts on (images, volumes,
resources, probes): those fields are kept as they are and not judged, since exitgate runs no
containers; ``kubectl apply --dry-run=server`` against a cluster is the check for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from exitgate.api import diagnostics as dx
from exitgate.api.base import Issue, Spec, Where, is_dns_label, labels_issues

# Kubernetes' IANA_SVC_NAME (a named port): 1-15 lower case letters, digits and '-', a letter in it.
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# How Istio marks the pods and templates it injects (pkg/kube/inject, annotation and label).
INJECT = "sidecar.istio.io/inject"
INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
TEMPLATES_ANNOTATION = "inject.istio.io/templates"
SIDECAR_STATUS = "sidecar.istio.io/status"
# Istio's exportTo for a Kubernetes Service: an annotation of namespaces, as a ServiceEntry's.
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def service_export_to(raw: dict[str, Any]) -> list[str]:
    """A Service's ``networking.istio.io/exportTo`` values (``.``, ``*``, namespaces), as a
    ServiceEntry's ``exportTo`` list; empty when there is none (exported to all)."""
    value = ((raw.get("metadata") or {}).get("annotations") or {}).get(EXPORT_TO_ANNOTATION, "")
    return [v.strip() for v in str(value).split(",") if v.strip()]


class KubeModel(Spec):
    """A part of a Kubernetes object: camelCase, and the fields exitgate does not read kept
    unjudged (see the module docstring)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel, frozen=True)


class KubeBody(Spec):
    """An object's top-level fields besides apiVersion, kind and metadata: as strict as kubectl's
    field validation (an unknown top-level field is an error)."""

    status: Any = None


def port_name_problem(name: str) -> str | None:
    if len(name) > 15 or not _PORT_NAME.match(name) or "--" in name or not re.search("[a-z]", name):
        return (f"port name {name!r} is not a valid IANA service name: at most 15 lower case letters, digits and "
                f"'-', at least one letter, no '--'")
    return None


class LabelSelector(KubeModel):
    match_labels: dict[str, str] | None = None
    match_expressions: list[dict[str, Any]] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        """Kubernetes' label selector semantics (matchLabels and matchExpressions, ANDed)."""
        if any(labels.get(k) != v for k, v in (self.match_labels or {}).items()):
            return False
        for e in self.match_expressions or []:
            key, op, values = e.get("key", ""), e.get("operator", ""), e.get("values") or []
            if op == "In" and labels.get(key) not in values:
                return False
            if op == "NotIn" and key in labels and labels[key] in values:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True

    def issues(self, where: Where) -> Iterable[Issue]:
        out = labels_issues(self.match_labels, ("matchLabels",))
        for i, e in enumerate(self.match_expressions or []):
            op = e.get("operator")
            if not e.get("key"):
                out.append(Issue(("matchExpressions", i, "key"), "a match expression needs a key"))
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                out.append(Issue(("matchExpressions", i, "operator"),
                                 f"operator {op!r} is not one of In, NotIn, Exists, DoesNotExist"))
            elif op in ("In", "NotIn") and not e.get("values"):
                out.append(Issue(("matchExpressions", i, "values"), f"operator {op} needs at least one value"))
            elif op in ("Exists", "DoesNotExist") and e.get("values"):
                out.append(Issue(("matchExpressions", i, "values"), f"operator {op} takes no values"))
        return out

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


PROTOCOLS = ("TCP", "UDP", "SCTP")


def _protocol_issues(protocol: str) -> list[Issue]:
    if protocol in PROTOCOLS:
        return []
    return [Issue(("protocol",), f"protocol {protocol!r} is not one of TCP, UDP, SCTP (an application protocol goes "
                                 f"in appProtocol or the port's name, like http-web)")]


# Kubernetes' required fields below are checked as rules, not as the structure (a Pod without
# containers still parses): ``analyze`` then reads such an object as Istio's analysis does
# (Istio's own analyzer inputs have Pods without a spec), while ``apply`` refuses it.
class ContainerPort(KubeModel):
    container_port: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: str = "TCP"

    def issues(self, where: Where) -> Iterable[Issue]:
        problem = port_name_problem(self.name) if self.name else None
        return ([Issue(("name",), problem)] if problem else []) + _protocol_issues(self.protocol)


class Container(KubeModel):
    name: str = ""
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    ports: list[ContainerPort] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        if not self.name:
            return [Issue(("name",), "a container needs a name", code=dx.MISSING_FIELD)]
        if not is_dns_label(self.name) or self.name != self.name.lower():
            return [Issue(("name",), f"container name {self.name!r} is not a valid DNS label (lower case letters, "
                                     f"digits and '-')")]
        return []


class PodSpec(KubeModel):
    containers: list[Container] = Field(default_factory=list)
    service_account_name: str | None = None
    # Deprecated by Kubernetes for serviceAccountName, still honored when that is unset.
    service_account: str | None = None

    @property
    def account(self) -> str:
        return self.service_account_name or self.service_account or "default"

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        if not self.containers:
            out.append(Issue(("containers",), "a pod needs at least one container", code=dx.MISSING_FIELD))
        seen: set[str] = set()
        for i, c in enumerate(self.containers):
            if c.name in seen:
                out.append(Issue(("containers", i, "name"), f"container name {c.name!r} is used twice"))
            seen.add(c.name)
        return out


class PodTemplateMeta(KubeModel):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    def issues(self, where: Where) -> Iterable[Issue]:
        return labels_issues(self.labels, ("labels",))


class PodTemplate(KubeModel):
    metadata: PodTemplateMeta = Field(default_factory=PodTemplateMeta)
    spec: PodSpec


class DeploymentSpec(KubeModel):
    selector: LabelSelector
    template: PodTemplate
    replicas: int | None = Field(default=None, ge=0)

    def issues(self, where: Where) -> Iterable[Issue]:
        labels = self.template.metadata.labels or {}
        if self.selector.empty:
            return [Issue(("selector",), "a Deployment's selector must not be empty")]
        if not self.selector.matches(labels):
            return [Issue(("template", "metadata", "labels"),
                          "`selector` does not match template `labels`: the Deployment would own no pod")]
        return []


class DeploymentBody(KubeBody):
    spec: DeploymentSpec


class PodBody(KubeBody):
    spec: PodSpec | None = None

    @property
    def pod(self) -> PodSpec:
        return self.spec or PodSpec()

    def issues(self, where: Where) -> Iterable[Issue]:
        if self.spec is None:
            return [Issue(("spec",), "a Pod needs a spec with its containers", code=dx.MISSING_FIELD)]
        return []


class ServicePort(KubeModel):
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = None
    name: str | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None
    node_port: int | None = Field(default=None, ge=0, le=65535)

    def issues(self, where: Where) -> Iterable[Issue]:
        out: list[Issue] = []
        if self.name:
            if not is_dns_label(self.name) or self.name != self.name.lower():
                out.append(Issue(("name",), f"port name {self.name!r} is not a valid DNS label"))
        out += _protocol_issues(self.protocol)
        if isinstance(self.target_port, int) and not 1 <= self.target_port <= 65535:
            out.append(Issue(("targetPort",), f"targetPort {self.target_port} is not between 1 and 65535"))
        elif isinstance(self.target_port, str):
            problem = port_name_problem(self.target_port)
            if problem:
                out.append(Issue(("targetPort",), problem))
        return out


class ServiceSpec(KubeModel):
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    external_name: str | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")

    def issues(self, where: Where) -> Iterable[Issue]:
        out = labels_issues(self.selector, ("selector",))
        ports = self.ports or []
        if self.type == "ExternalName":
            if not self.external_name:
                out.append(Issue(("externalName",), "a Service of type ExternalName needs externalName"))
        elif not ports and self.cluster_ip != "None":
            out.append(Issue(("ports",), "a Service needs at least one port"))
        names: dict[str, int] = {}
        for i, p in enumerate(ports):
            if len(ports) > 1 and not p.name:
                out.append(Issue(("ports", i, "name"), "a Service with more than one port must name every port"))
            elif p.name:
                if p.name in names:
                    out.append(Issue(("ports", i, "name"), f"port name {p.name!r} is used twice"))
                names[p.name] = i
        seen: set[tuple[int, str]] = set()
        for i, p in enumerate(ports):
            if (p.port, p.protocol) in seen:
                out.append(Issue(("ports", i, "port"), f"port {p.port}/{p.protocol} is declared twice"))
            seen.add((p.port, p.protocol))
        return out


class ServiceBody(KubeBody):
    spec: ServiceSpec = Field(default_factory=ServiceSpec)


class ServiceAccountBody(KubeBody):
    secrets: list[dict[str, Any]] | None = None
    image_pull_secrets: list[dict[str, Any]] | None = None
    automount_service_account_token: bool | None = None


class NamespaceBody(KubeBody):
    spec: dict[str, Any] | None = None


# kind -> (apiVersion, body model, namespaced). ``v1 List`` is unpacked by the loader.
KUBE_MODELS: dict[str, tuple[str, type[Spec], bool]] = {
    "Namespace": ("v1", NamespaceBody, False),
    "ServiceAccount": ("v1", ServiceAccountBody, True),
    "Service": ("v1", ServiceBody, True),
    "Pod": ("v1", PodBody, True),
    "Deployment": ("apps/v1", DeploymentBody, True),
}

# Workload kinds Kubernetes has that exitgate does not turn into workloads yet.
KUBE_UNSUPPORTED = frozenset({
    "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "ReplicationController",
})


def service_name_problem(name: str) -> str | None:
    """A Service's name is a DNS-1035 label: it starts with a letter."""
    if len(name) > 63 or not _DNS1035.match(name):
        return (f"{name!r} is not a valid Service name: a DNS-1035 label (lower case letters, digits and '-', "
                f"starting with a letter)")
    return None
