"""The mesh's inventory: the mesh file's gateways, workloads and services, plus what the applied
Kubernetes objects declare (``api.kube``). Pure; one function, used by the control plane (which
proxies to run, what the registry holds) and by ``analyze`` (which workloads a selector picks).

How an object becomes part of the mesh, as Istio decides it where exitgate can:

- A **Deployment** (or a Pod no Deployment owns) is a **gateway** when its pods are Istio gateway
  pods: the ``inject.istio.io/templates: gateway`` annotation, or an ``istio`` label of
  ``egressgateway``/``ingressgateway``, or a container ``istio-proxy`` running ``router``. Its
  Service (the one whose selector picks its pods) gives its service name and ports (port ->
  targetPort, protocol from the port's name as Istio reads it); ``replicas`` its replicas.
- Otherwise it is a **workload with a sidecar** when injected: the pod's
  ``sidecar.istio.io/inject`` label (or annotation) says so, else its Namespace's
  ``istio-injection``/``istio.io/rev`` label. A namespace no Namespace object declares counts
  as injected (there is no cluster whose namespaces already exist, labeled or not); one that a
  Namespace object, ``exitgate create namespace`` or ``exitgate label namespace`` declares
  follows Istio's rule exactly (no label, no sidecar).
- A **Service** that picks no gateway is a service the registry knows
  (``NAME.NAMESPACE.svc.cluster.local``), answered in plain text on loopback at its target
  port (``externalPortMap`` maps it, as it maps ServiceEntry endpoints): exitgate's sidecars
  carry outbound traffic only.

An object with the name and namespace of a proxy the mesh file declares updates it (labels,
service account, replicas, ports) and keeps its place (address, proxy port): so the mesh file's
default ``sleep`` workload and ``istio-egressgateway`` are the ones Istio's ``sleep.yaml`` and
gateway Deployment declare.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.kube import (
    INJECT,
    INJECTION_LABEL,
    REVISION_LABEL,
    SIDECAR_STATUS,
    TEMPLATES_ANNOTATION,
    DeploymentBody,
    PodBody,
    PodSpec,
    ServiceBody,
    service_export_to,
)
from exitgate.api.resources import Resource
from exitgate.mesh import ExternalService, GatewayProxy, MeshConfig, ServicePortMap, WorkloadProxy

GATEWAY_LABELS = frozenset({"egressgateway", "ingressgateway"})
MAX_REPLICAS = 16


@dataclass(frozen=True)
class Pods:
    """One Deployment's or Pod's pods, as the inventory reads them."""

    resource: Resource
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: PodSpec
    replicas: int


@dataclass
class Inventory:
    mesh: MeshConfig
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Which object declared each proxy (name, namespace) -> "Deployment ns/name".
    declared_by: dict[tuple[str, str], str] = field(default_factory=dict)


def pods_of(resources: Iterable[Resource]) -> list[Pods]:
    """Every Deployment's pods, and each Pod no Deployment in its namespace selects."""
    deployments = [r for r in resources if r.kind == "Deployment"]
    out: list[Pods] = []
    for r in deployments:
        body = cast(DeploymentBody, r.spec)
        meta = body.spec.template.metadata
        replicas = 1 if body.spec.replicas is None else body.spec.replicas
        out.append(Pods(r, dict(meta.labels or {}), dict(meta.annotations or {}), body.spec.template.spec, replicas))
    for r in resources:
        if r.kind != "Pod":
            continue
        metadata = r.raw.get("metadata") or {}
        labels = dict(metadata.get("labels") or {})
        owned = any(d.namespace == r.namespace and cast(DeploymentBody, d.spec).spec.selector.matches(labels)
                    for d in deployments)
        if not owned:
            out.append(Pods(r, labels, dict(metadata.get("annotations") or {}), cast(PodBody, r.spec).pod, 1))
    return out


def is_gateway(p: Pods) -> bool:
    """Istio's gateway pods: the gateway injection template, Istio's gateway labels, or a proxy
    running as ``router``, or a pod whose one container is the proxy (not injected: a sidecar
    pod has its application's containers too)."""
    if p.annotations.get(TEMPLATES_ANNOTATION) == "gateway" or p.labels.get("istio") in GATEWAY_LABELS:
        return True
    containers = p.spec.containers
    if any(c.name == "istio-proxy" and "router" in (c.args or []) for c in containers):
        return True
    return [c.name for c in containers] == ["istio-proxy"] and SIDECAR_STATUS not in p.annotations


def injected(p: Pods, namespaces: dict[str, dict[str, str]]) -> bool:
    """Istio's injection decision (pod label, then annotation, then namespace label), with
    exitgate's default for a namespace no object declares (see the module docstring). A pod
    already injected (``istioctl kube-inject``'s, or one read from a cluster) carries Istio's
    status annotation: it is in the mesh whatever its namespace says."""
    if SIDECAR_STATUS in p.annotations:
        return True
    for source in (p.labels, p.annotations):
        value = source.get(INJECT)
        if value is not None:
            return value.lower() in ("true", "enabled", "yes", "y")
    ns = namespaces.get(p.resource.namespace)
    if ns is None:
        return True
    if ns.get(INJECTION_LABEL) is not None:
        return ns[INJECTION_LABEL] == "enabled"
    return REVISION_LABEL in ns


def kube_inject(doc: dict[str, Any]) -> dict[str, Any]:
    """``istioctl kube-inject`` for one document: a Deployment's pod template or a Pod gets
    Istio's sidecar container (``istio-proxy``), its status annotation and its labels, so that
    applying the output declares a workload with a sidecar in any namespace. Other documents,
    and pods already injected, are returned as they are. Pure; the input is not changed."""
    kind = doc.get("kind")
    if kind not in ("Deployment", "Pod") or not isinstance(doc.get("spec"), dict):
        return doc
    out = copy.deepcopy(doc)
    holder = out["spec"].get("template") if kind == "Deployment" else out
    if not isinstance(holder, dict):
        return doc
    meta = holder.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {}) or {}
    if SIDECAR_STATUS in annotations:
        return doc
    spec = holder.setdefault("spec", {})
    containers = spec.setdefault("containers", [])
    labels = meta.setdefault("labels", {}) or {}
    app = labels.get("app") or labels.get("app.kubernetes.io/name") or out.get("metadata", {}).get("name", "")
    annotations[SIDECAR_STATUS] = json.dumps({"containers": ["istio-proxy"], "initContainers": [], "volumes": [],
                                             "imagePullSecrets": None, "revision": "default"},
                                            separators=(",", ":"))
    meta["annotations"] = annotations
    labels.setdefault("security.istio.io/tlsMode", "istio")
    labels.setdefault("service.istio.io/canonical-name", app)
    labels.setdefault("service.istio.io/canonical-revision", labels.get("version", "latest"))
    meta["labels"] = labels
    # exitgate's Envoy is the proxy; its image is exitgate's own, started by `exitgate up`.
    containers.append({"name": "istio-proxy", "image": "exitgate/envoy", "args": ["proxy", "sidecar"]})
    return out


def port_protocol(name: str | None, app_protocol: str | None) -> str:
    """Istio's protocol selection for a Kubernetes Service port: appProtocol, else the name's
    prefix (``http-web``, ``https``, ``grpc``...); TCP when neither says."""
    for value in (app_protocol, name):
        if not value:
            continue
        prefix = value.lower().split("-", 1)[0]
        found = {"http": "HTTP", "http2": "HTTP2", "https": "HTTPS", "tls": "TLS", "tcp": "TCP", "grpc": "GRPC",
                 "grpc-web": "HTTP", "h2c": "HTTP2"}.get(prefix)
        if found is not None:
            return found
    return "TCP"


def _selects(service: Resource, labels: dict[str, str]) -> bool:
    selector = cast(ServiceBody, service.spec).spec.selector
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def _ports(service: Resource, pods: Pods | None, mesh: MeshConfig, host: str | None) -> list[ServicePortMap]:
    out = []
    for sp in cast(ServiceBody, service.spec).spec.ports or []:
        if sp.protocol != "TCP":
            continue  # UDP and SCTP: Envoy's listeners here are TCP
        target: int = sp.port
        if isinstance(sp.target_port, int):
            target = sp.target_port
        elif isinstance(sp.target_port, str) and pods is not None:
            named = next((cp.container_port for c in pods.spec.containers for cp in c.ports or []
                          if cp.name == sp.target_port), None)
            target = named or sp.port
        if host is not None:
            target = mesh.external_port(target, host)
        protocol = port_protocol(sp.name, sp.app_protocol)
        out.append(ServicePortMap(port=sp.port, target_port=target, name=sp.name or "", protocol=protocol))  # type: ignore[arg-type]
    return out


def _free_address(bound: set[tuple[str, int]], ports: Sequence[ServicePortMap], replicas: int) -> str:
    """The first loopback address from 127.0.0.1 where every replica's ports are free."""
    first = ipaddress.ip_address("127.0.0.1")
    for offset in range(0, 250):
        base = first + offset
        if all((str(base + i), p.target_port) not in bound for i in range(replicas) for p in ports):
            return str(base)
    return "127.0.0.1"


def inventory(mesh: MeshConfig, resources: Sequence[Resource]) -> Inventory:
    """The mesh file's inventory with what ``resources``' Kubernetes objects declare."""
    if not any(r.kind in ("Deployment", "Pod", "Service") for r in resources):
        return Inventory(mesh)
    namespaces = {r.name: dict((r.raw.get("metadata") or {}).get("labels") or {})
                  for r in resources if r.kind == "Namespace"}
    services = sorted((r for r in resources if r.kind == "Service"), key=lambda r: r.key)
    diags: list[Diagnostic] = []
    gateways = {(g.name, g.namespace): g for g in mesh.gateways}
    workloads = {(w.name, w.namespace): w for w in mesh.workloads}
    declared: dict[tuple[str, str], str] = {}
    gateway_services: set[tuple[str, str]] = set()
    bound = {(addr, p.target_port) for g in mesh.gateways for addr in g.replica_addresses for p in g.ports}

    for p in sorted(pods_of(resources), key=lambda p: p.resource.key):
        r = p.resource
        key = (r.name, r.namespace)
        if key in declared:
            diags.append(_diag(r, f"{declared[key]} already declares a proxy {r.name}.{r.namespace}; this one is "
                                  f"not run", ("metadata", "name")))
            continue
        if is_gateway(p):
            svc = next((s for s in services if s.namespace == r.namespace and _selects(s, p.labels)), None)
            replicas = max(1, min(p.replicas, MAX_REPLICAS))
            if p.replicas > MAX_REPLICAS:
                diags.append(_diag(r, f"exitgate runs at most {MAX_REPLICAS} replicas of a gateway; running "
                                      f"{MAX_REPLICAS}", ("spec", "replicas"), Severity.WARNING))
            ports = _ports(svc, p, mesh, None) if svc is not None else []
            if svc is not None:
                gateway_services.add((svc.name, svc.namespace))
            known = gateways.get(key)
            update = {"labels": p.labels, "service_account": p.spec.account, "replicas": replicas,
                      "service": svc.name if svc is not None else r.name}
            if ports:
                update["ports"] = ports
            if known is not None:
                for addr in known.replica_addresses:
                    for port in known.ports:
                        bound.discard((addr, port.target_port))
                gw = known.model_copy(update=update)
            else:
                gw = GatewayProxy(name=r.name, namespace=r.namespace, labels=p.labels,
                                  service_account=p.spec.account, service=update["service"],  # type: ignore[arg-type]
                                  ports=ports, replicas=replicas)
                gw = gw.model_copy(update={"address": _free_address(bound, gw.ports, replicas)})
            bound |= {(addr, port.target_port) for addr in gw.replica_addresses for port in gw.ports}
            gateways[key] = gw
            declared[key] = r.ref
        elif injected(p, namespaces):
            known_w = workloads.get(key)
            update_w = {"labels": p.labels, "service_account": p.spec.account}
            workloads[key] = (known_w.model_copy(update=update_w) if known_w is not None else
                              WorkloadProxy(name=r.name, namespace=r.namespace, labels=p.labels,
                                            service_account=p.spec.account))
            declared[key] = r.ref

    known_services = {(s.name, s.namespace) for s in mesh.services}
    extra: list[ExternalService] = []
    all_pods = pods_of(resources)
    for s in services:
        key = (s.name, s.namespace)
        if key in gateway_services or key in known_services:
            continue
        body = cast(ServiceBody, s.spec).spec
        if body.type == "ExternalName":
            continue  # a DNS alias, not endpoints: exitgate's registry has no such entry yet
        host = f"{s.name}.{s.namespace}.svc.cluster.local"
        backing = next((p for p in all_pods if p.resource.namespace == s.namespace and _selects(s, p.labels)), None)
        ports = _ports(s, backing, mesh, host)
        if ports:
            extra.append(ExternalService(name=s.name, namespace=s.namespace, ports=ports,
                                         export_to=service_export_to(s.raw)))
    effective = mesh.model_copy(update={"gateways": list(gateways.values()), "workloads": list(workloads.values()),
                                        "services": [*mesh.services, *extra]})
    return Inventory(effective, diags, declared)


def _diag(r: Resource, message: str, path: tuple[str | int, ...], severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(dx.DUPLICATE if severity is Severity.ERROR else dx.INVALID_VALUE, severity, message,
                      file=r.source.file if r.source else None, line=r.source.line if r.source else None,
                      resource=r.ref, field=".".join(str(x) for x in path))
