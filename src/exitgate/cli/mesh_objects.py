"""What ``get`` lists besides the applied objects: the mesh's own proxies as pods (one per
gateway replica and workload, with the labels, service account and containers it runs with) and
the mesh file's gateway and service Services, as ``kubectl get pods|svc`` lists a cluster's. The
docs' ``kubectl get pod -l app=sleep`` and ``kubectl get svc istio-egressgateway -n
istio-system`` then find what exitgate runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exitgate.api.resources import Resource
from exitgate.cli.common import mesh_inventory
from exitgate.mesh import ServicePortMap
from exitgate.runtime import StateDir


def proxy_pods(st: StateDir, applied: Sequence[Resource]) -> list[Resource]:
    """One pod for each proxy of the mesh (mesh file and applied Deployments and Pods), as
    ``kubectl get pods`` lists a Deployment's: its labels, service account and containers (the
    pod template's, and ``istio-proxy``), and ``Running`` while ``up`` runs its Envoy. Its name is
    the proxy's (``sleep``, ``istio-egressgateway-1``), which ``exec`` and ``logs`` take."""
    from exitgate.api.kube import PodBody

    have = {(r.namespace, r.name) for r in applied if r.kind == "Pod"}
    templates = {(r.namespace, r.name): r.raw.get("spec", {}).get("template", {}).get("spec", {})
                 for r in applied if r.kind == "Deployment"}
    info = st.read_runtime()
    running = {(p.namespace, p.name) for p in (info.proxies if info else []) if p.pid is not None}
    mesh = mesh_inventory(st)
    rows: list[tuple[str, str, dict[str, str], str, str]] = []
    for g in mesh.gateways:
        rows += [(g.replica_name(i), g.namespace, g.labels, g.identity[1], g.name) for i in range(g.replicas)]
    rows += [(w.name, w.namespace, w.labels, w.identity[1], w.name) for w in mesh.workloads]
    out: list[Resource] = []
    for name, ns, labels, account, owner in rows:
        if (ns, name) in have:
            continue
        template = templates.get((ns, owner), {})
        containers = [c.get("name", "") for c in template.get("containers") or [] if c.get("name") != "istio-proxy"]
        up = (ns, name) in running
        raw = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
               "spec": {"serviceAccountName": account,
                        "containers": [{"name": c} for c in [*containers, "istio-proxy"]]},
               "status": {"phase": "Running" if up else "Pending",
                          "containerStatuses": [{"name": "istio-proxy", "ready": up}]}}
        out.append(Resource("v1", "Pod", ns, name, PodBody(), raw))
    return out


def mesh_services(st: StateDir, applied: Sequence[Resource]) -> list[Resource]:
    """The Services the mesh file declares (each gateway's, and its services outside the mesh),
    as ``kubectl get svc`` lists a cluster's: the docs' ``kubectl get svc istio-egressgateway -n
    istio-system`` finds the default gateway's. Applied Service objects are listed as they are."""
    from exitgate.api.kube import ServiceBody

    have = {(r.namespace, r.name) for r in applied if r.kind == "Service"}
    mesh = mesh_inventory(st)
    rows: list[tuple[str, str, dict[str, str] | None, list[ServicePortMap]]] = [
        (g.service or g.name, g.namespace, g.labels, g.ports) for g in mesh.gateways]
    rows += [(m.name, m.namespace, None, m.ports) for m in mesh.services]
    out: list[Resource] = []
    for name, ns, selector, ports in rows:
        if (ns, name) in have:
            continue
        spec: dict[str, Any] = {"type": "ClusterIP", "ports": [
            {"name": p.name, "port": p.port, "targetPort": p.target_port, "protocol": "TCP"} if p.name else
            {"port": p.port, "targetPort": p.target_port, "protocol": "TCP"} for p in ports]}
        if selector:
            spec["selector"] = dict(selector)
        raw = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}
        out.append(Resource("v1", "Service", ns, name, ServiceBody(), raw))
    return out
