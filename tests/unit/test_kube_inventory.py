"""Kubernetes objects (api.kube) load with Kubernetes' rules, and declare the mesh's workloads,
gateways and services (inventory), as Istio's injection and gateway deployment read them."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

from exitgate.api import diagnostics as dx
from exitgate.api.loader import load_paths, load_text
from exitgate.inventory import injected, inventory, pods_of, port_protocol
from exitgate.mesh import MeshConfig, default_egress_gateway

CASES = Path(__file__).parent / "kube_cases"


def cli(tmp_path: Path) -> Callable[..., tuple[int, str]]:
    """The real CLI (in process) on a state directory under ``tmp_path``: (exit code, output)."""
    from typer.testing import CliRunner

    from exitgate.cli.main import build_app, normalize_argv

    def run(*argv: str) -> tuple[int, str]:
        result = CliRunner().invoke(build_app(), normalize_argv([*argv, "--state-dir", str(tmp_path / "s")]))
        return result.exit_code, result.output
    return run


def _load(text: str) -> tuple[list, list]:  # type: ignore[type-arg]
    r = load_text(textwrap.dedent(text), "k.yaml")
    return r.resources, r.diagnostics


def test_istios_sleep_sample_loads_as_three_objects() -> None:
    loaded = load_paths([CASES / "sleep.yaml"])
    assert loaded.diagnostics == []
    assert [r.ref for r in loaded.resources] == ["ServiceAccount default/sleep", "Service default/sleep",
                                                 "Deployment default/sleep"]


def test_a_v1_list_is_its_items_with_their_own_lines() -> None:
    res, diags = _load("""\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: ServiceAccount
          metadata: {name: a}
        - apiVersion: v1
          kind: Service
          metadata: {name: b}
          spec:
            ports:
            - port: 80
            - port: 81
        """)
    assert [r.ref for r in res] == ["ServiceAccount default/a"]
    # As Kubernetes: each unnamed port of a multi-port Service is an error.
    assert [(d.code, d.line, d.field) for d in diags] == [(dx.INVALID_VALUE, 12, "spec.ports[0].name"),
                                                          (dx.INVALID_VALUE, 13, "spec.ports[1].name")]
    assert "must name every port" in diags[0].message


def test_kubernetes_rules_name_the_field() -> None:
    _, diags = _load("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector:
            matchLabels: {app: web}
          template:
            metadata:
              labels: {app: other}
            spec:
              containers:
              - name: Web_1
        ---
        apiVersion: apps/v1beta1
        kind: Deployment
        metadata: {name: old}
        spec: {}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: 9lives}
        spec:
          ports: [{port: 80, targetPort: 70000}]
        """)
    got = [(d.code, d.line, d.field) for d in diags]
    assert (dx.INVALID_VALUE, 9, "spec.template.metadata.labels") in got
    assert (dx.INVALID_VALUE, 12, "spec.template.spec.containers[0].name") in got
    assert (dx.UNKNOWN_KIND, 14, "apiVersion") in got
    assert (dx.INVALID_VALUE, 21, "metadata.name") in got
    assert (dx.INVALID_VALUE, 23, "spec.ports[0].targetPort") in got
    assert len(got) == 5, diags


def test_a_namespace_has_no_namespace() -> None:
    res, diags = _load("""\
        apiVersion: v1
        kind: Namespace
        metadata: {name: team-a, namespace: default, labels: {istio-injection: enabled}}
        """)
    assert [(r.kind, r.namespace, r.name) for r in res] == [("Namespace", "", "team-a")]
    assert "namespace" not in res[0].raw["metadata"]
    assert [(d.severity.value, d.field) for d in diags] == [("Warning", "metadata.namespace")]


def test_unknown_top_level_fields_are_refused_but_pod_template_details_are_kept() -> None:
    res, diags = _load("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: c, image: busybox, resources: {limits: {cpu: "1"}}}]
        spex: {}
        """)
    assert res == [] and [(d.code, d.field) for d in diags] == [(dx.UNKNOWN_FIELD, "spex")]


SLEEP_ONLY = MeshConfig(workloads=[])


def test_the_sleep_sample_declares_the_sleep_workload_and_its_service() -> None:
    resources = load_paths([CASES / "sleep.yaml"]).resources
    found = inventory(SLEEP_ONLY, resources)
    [w] = found.mesh.workloads
    assert (w.name, w.namespace, w.service_account, w.labels) == ("sleep", "default", "sleep", {"app": "sleep"})
    assert [(s.host, [(p.port, p.target_port, p.protocol) for p in s.ports]) for s in found.mesh.services] == [
        ("sleep.default.svc.cluster.local", [(80, 80, "HTTP")])]
    assert found.declared_by[("sleep", "default")] == "Deployment default/sleep"
    # The mesh file's default sleep workload is the same one, not a second.
    assert len(inventory(MeshConfig(), resources).mesh.workloads) == 1


def _pods(text: str) -> list:  # type: ignore[type-arg]
    res, diags = _load(text)
    assert not dx.has_errors(diags), diags
    return res


DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata:
      labels: {labels}
      annotations: {annotations}
    spec:
      containers: [{{name: app, image: app}}]
"""


def _deploy(ns: str = "team", labels: str = "{app: app}", annotations: str = "{}") -> str:
    return DEPLOY.format(ns=ns, labels=labels, annotations=annotations)


def test_injection_follows_istio_with_undeclared_namespaces_injected() -> None:
    def runs(text: str) -> bool:
        res = _pods(text)
        namespaces = {r.name: (r.raw["metadata"].get("labels") or {}) for r in res if r.kind == "Namespace"}
        return injected(pods_of(res)[0], namespaces)

    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {{name: team, labels: {labels}}}\n---\n"
    assert runs(_deploy())  # no Namespace object: the mesh's
    assert not runs(ns.format(labels="{}") + _deploy())  # a declared namespace without the label
    assert runs(ns.format(labels="{istio-injection: enabled}") + _deploy())
    assert runs(ns.format(labels="{istio.io/rev: canary}") + _deploy())
    assert not runs(ns.format(labels="{istio-injection: disabled}") + _deploy())
    assert not runs(_deploy(labels='{app: app, sidecar.istio.io/inject: "false"}'))
    assert runs(ns.format(labels="{}") + _deploy(annotations='{sidecar.istio.io/inject: "true"}'))
    assert not inventory(SLEEP_ONLY, _pods(_deploy(labels='{app: app, sidecar.istio.io/inject: "false"}'))).mesh.workloads


GATEWAY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: my-egress, namespace: egress}
spec:
  replicas: 2
  selector: {matchLabels: {istio: my-egress}}
  template:
    metadata:
      annotations: {inject.istio.io/templates: gateway}
      labels: {istio: my-egress, sidecar.istio.io/inject: "true"}
    spec:
      serviceAccountName: my-egress-sa
      containers: [{name: istio-proxy, image: auto, ports: [{name: web, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: my-egress-svc, namespace: egress}
spec:
  selector: {istio: my-egress}
  ports:
  - {name: http2, port: 80, targetPort: web}
  - {name: https, port: 443, targetPort: 8443}
"""


def test_a_gateway_deployment_and_its_service_declare_a_gateway_beside_the_default_one() -> None:
    found = inventory(SLEEP_ONLY, _pods(GATEWAY))
    default, mine = found.mesh.gateways
    assert (default.name, default.address) == ("istio-egressgateway", "127.0.0.1")
    assert (mine.name, mine.namespace, mine.service, mine.service_account, mine.replicas) == (
        "my-egress", "egress", "my-egress-svc", "my-egress-sa", 2)
    assert [(p.port, p.target_port, p.protocol) for p in mine.ports] == [(80, 8080, "HTTP2"), (443, 8443, "HTTPS")]
    # The default gateway listens on 127.0.0.1:8080 and :8443: the new one's replicas go beside it.
    assert mine.replica_addresses == ["127.0.0.2", "127.0.0.3"]
    assert mine.service_host == "my-egress-svc.egress.svc.cluster.local"
    assert found.mesh.services == []  # the gateway's Service is the gateway's, not a plain service


def test_istios_own_egress_gateway_deployment_updates_the_mesh_files() -> None:
    text = GATEWAY.replace("my-egress-svc", "istio-egressgateway").replace("my-egress", "istio-egressgateway") \
        .replace("namespace: egress", "namespace: istio-system")
    [gw] = inventory(SLEEP_ONLY, _pods(text)).mesh.gateways
    assert (gw.name, gw.address, gw.replicas, gw.service_account) == (
        "istio-egressgateway", default_egress_gateway().address, 2, "istio-egressgateway-sa")


def test_a_pod_its_deployment_owns_is_not_a_second_workload() -> None:
    pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: app-7d9c, namespace: team, labels: {app: app}}\n" \
          "spec: {containers: [{name: app}]}\n"
    names = [w.name for w in inventory(SLEEP_ONLY, _pods(_deploy() + pod)).mesh.workloads]
    assert names == ["app"]
    alone = pod.replace("app: app", "app: solo")
    assert [w.name for w in inventory(SLEEP_ONLY, _pods(_deploy() + alone)).mesh.workloads] == ["app", "app-7d9c"]


def test_port_protocols_are_istios() -> None:
    assert [port_protocol(n, a) for n, a in [("http", None), ("http-web", None), ("https", None), ("tls-x", None),
                                              ("grpc", None), ("redis", None), (None, "http2"), ("web", "https")]] == [
        "HTTP", "HTTP", "HTTPS", "TLS", "GRPC", "TCP", "HTTP2", "HTTPS"]


def test_kubectl_verbs_on_cluster_scoped_namespaces(tmp_path: Path) -> None:
    run = cli(tmp_path)

    kube = Path(__file__).resolve().parents[2] / "examples" / "poc-egress-kubernetes"
    assert run("apply", "-f", str(kube))[0] == 0
    code, out = run("get", "ns")  # no namespace filter for a cluster-scoped kind
    assert code == 0 and "curl-egress-tst" in out and "curl-external-tst" in out
    assert "name: curl-egress-tst" in run("get", "namespace", "curl-egress-tst", "-o", "yaml")[1]
    code, out = run("delete", "ns", "curl-egress-tst")
    assert code == 0 and out.strip() == 'namespace "curl-egress-tst" deleted'
    # Everything in it went with it, as in Kubernetes; the other namespace's objects stay.
    assert "curl-egress-tst" not in run("get", "deploy", "-A")[1]
    assert "curl-test" in run("get", "deploy", "-A")[1]
    code, out = run("delete", "ns", "nope")
    assert code == 1 and 'namespace "nope" not found' in out


def test_analysis_keeps_what_validation_refuses_once_typed_and_apply_refuses_it() -> None:
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: bare, labels: {app: bare}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          ports: [{port: 80, protocol: HTTP}]
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          selector: {istio: egressgateway}
        """)
    strict = load_text(text, "k.yaml")
    assert strict.resources == []
    assert {(d.resource, d.field) for d in strict.diagnostics if d.is_error} == {
        ("Pod default/bare", "spec"), ("Service default/web", "spec.ports[0].protocol"),
        ("Gateway default/gw", "spec.servers")}
    kept = load_text(text, "k.yaml", keep_unsupported=True, keep_invalid=True)
    # The errors stay errors; the resources are analyzed anyway, as istioctl reads them.
    assert [r.ref for r in kept.resources] == ["Pod default/bare", "Service default/web", "Gateway default/gw"]
    assert [d for d in kept.diagnostics if d.is_error] == [d for d in strict.diagnostics if d.is_error]


def test_a_pod_whose_one_container_is_the_proxy_is_a_gateway() -> None:
    res = _pods("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: custom-gateway, namespace: gw, labels: {istio: custom}}
        spec: {containers: [{name: istio-proxy, image: proxyv2}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: app, namespace: gw, labels: {app: a}, annotations: {sidecar.istio.io/status: "{}"}}
        spec: {containers: [{name: app}, {name: istio-proxy}]}
        """)
    found = inventory(MeshConfig(gateways=[], workloads=[]), res).mesh
    assert [g.name for g in found.gateways] == ["custom-gateway"] and [w.name for w in found.workloads] == ["app"]


def test_get_pods_lists_a_pod_per_proxy_with_its_labels_and_selectors_filter(tmp_path: Path) -> None:
    from exitgate.cli.kubectl import jsonpath

    run = cli(tmp_path)

    assert run("apply", "-f", str(CASES / "sleep.yaml"))[0] == 0
    code, out = run("get", "pod", "-l", "app=sleep", "-o", "jsonpath={.items..metadata.name}")
    assert (code, out) == (0, "sleep")
    code, out = run("get", "pods", "-A", "-o", "json")
    pods = {p["metadata"]["name"]: p for p in __import__("json").loads(out)["items"]}
    assert set(pods) == {"sleep", "istio-egressgateway"}
    assert pods["sleep"]["spec"]["serviceAccountName"] == "sleep"
    assert [c["name"] for c in pods["sleep"]["spec"]["containers"]] == ["sleep", "istio-proxy"]
    assert pods["sleep"]["status"]["phase"] == "Pending"  # no `up` runs it
    assert "sleep" not in run("get", "pods", "-A", "-l", "app!=sleep")[1]
    assert "istio-egressgateway" in run("get", "pods", "-A", "-l", "istio")[1]
    assert "istio-egressgateway" not in run("get", "pods", "-A", "-l", "!istio")[1]
    assert "sleep" in run("get", "pods", "-l", "app in (sleep,curl)")[1]
    assert "sleep" not in run("get", "pods", "-A", "-l", "app notin (sleep)")[1]
    assert "istio-egressgateway" in run("get", "pods", "-A", "-l", "app notin (sleep)")[1]  # no app label
    code, out = run("get", "pods", "-l", "app in (sleep")
    assert code == 1 and "unable to parse requirement" in out
    # JSONPath's recursive descent, as kubectl's.
    data = {"items": [{"metadata": {"name": "a"}, "spec": {"template": {"metadata": {"name": "t"}}}},
                      {"metadata": {"name": "b"}}]}
    assert jsonpath("{.items..metadata.name}", data) == "a t b"
    assert jsonpath("{..name}", {"x": [{"name": 1}, {"y": {"name": 2}}]}) == "1 2"


def test_a_services_export_to_annotation_scopes_it_for_the_proxies_and_for_analyze() -> None:
    from exitgate.translate.sidecar import translate_sidecar
    from exitgate.translate.snapshot import Snapshot

    res = _pods(textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata: {name: private, namespace: team, annotations: {networking.istio.io/exportTo: "."}}
        spec: {ports: [{name: http, port: 80}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: shared, namespace: team}
        spec: {ports: [{name: http, port: 80}]}
        """) + "---\n" + _deploy(ns="team"))
    mesh = inventory(MeshConfig(), res).mesh
    assert [(s.name, s.export_to) for s in mesh.services] == [("private", ["."]), ("shared", [])]

    def clusters(workload: str) -> set[str]:
        w = next(w for w in mesh.workloads if w.name == workload)
        return {c.name for c in translate_sidecar(Snapshot(res, mesh), w, 15001)[0].clusters}

    assert "outbound|80||private.team.svc.cluster.local" in clusters("app")  # its own namespace
    assert "outbound|80||private.team.svc.cluster.local" not in clusters("sleep")  # default: not exported there
    assert "outbound|80||shared.team.svc.cluster.local" in clusters("sleep")
    # analyze's lookup reads the same annotation: from default, the private Service is not there.
    from datetime import datetime, timezone

    from exitgate.analyze import analyze

    vs = _pods(textwrap.dedent("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: to-private}
        spec:
          hosts: [x.example.com]
          http: [{route: [{destination: {host: private.team.svc.cluster.local}}]}]
        """))
    found = analyze([*res, *vs], MeshConfig(), now=datetime.now(timezone.utc))
    assert any(d.code == "IST0101" and d.resource == "VirtualService default/to-private" for d in found), found


def test_kubectl_label_and_create_namespace_decide_injection_as_in_istio(tmp_path: Path) -> None:
    from exitgate.cli.common import mesh_inventory
    from exitgate.runtime import StateDir

    run = cli(tmp_path)

    def workloads() -> list[str]:
        return [f"{w.name}.{w.namespace}" for w in mesh_inventory(StateDir(tmp_path / "s")).workloads]

    # The Istio task's way: a namespace created for a server outside the mesh is not injected.
    assert run("create", "namespace", "mesh-external") == (0, "namespace/mesh-external created\n")
    assert run("create", "namespace", "mesh-external")[0] == 1  # already exists, as kubectl says
    (tmp_path / "app.yaml").write_text(_deploy(ns="mesh-external"))
    assert run("apply", "-f", str(tmp_path / "app.yaml"))[0] == 0
    assert "app.mesh-external" not in workloads()
    assert run("label", "namespace", "mesh-external", "istio-injection=enabled") == (
        0, "namespace/mesh-external labeled\n")
    assert "app.mesh-external" in workloads()
    code, out = run("label", "ns", "mesh-external", "istio-injection=disabled")
    assert code == 1 and "already has a value (enabled), and --overwrite is false" in out
    assert run("label", "ns", "mesh-external", "istio-injection=disabled", "--overwrite")[0] == 0
    assert "app.mesh-external" not in workloads()
    # `default` exists in every cluster: labeling it makes its object.
    assert run("label", "namespace", "default", "istio-injection=enabled")[0] == 0
    assert "default" in run("get", "ns")[1]
    assert run("label", "ns", "default", "istio-injection-")[0] == 0
    assert "istio-injection" not in run("get", "ns", "default", "-o", "yaml")[1]
    code, out = run("label", "deploy", "nope", "a=b")
    assert code == 1 and 'deployment.apps "nope" not found' in out


def test_get_svc_lists_the_mesh_files_gateway_services_and_logs_takes_the_proxy_container(tmp_path: Path) -> None:
    run = cli(tmp_path)

    # The Egress Gateways task's first check: is the egress gateway deployed?
    code, out = run("get", "svc", "istio-egressgateway", "-n", "istio-system", "-o", "json")
    svc = __import__("json").loads(out)
    assert code == 0 and svc["spec"]["selector"] == {"istio": "egressgateway", "app": "istio-egressgateway"}
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, 8080), (443, 8443)]
    assert "istio-egressgateway" in run("get", "pod", "-l", "istio=egressgateway", "-n", "istio-system")[1]
    code, out = run("logs", "sleep", "-c", "sleep")
    assert code == 1 and 'istio-proxy container only, not of "sleep"' in out


def test_create_configmap_from_a_file_as_the_tasks_do_and_its_yaml_round_trips(tmp_path: Path) -> None:
    run = cli(tmp_path)

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {\n}\nhttp {\n  server { listen 443 ssl; }\n}\n")
    assert run("create", "configmap", "nginx-configmap", "-n", "mesh-external",
               f"--from-file=nginx.conf={conf}") == (0, "configmap/nginx-configmap created\n")
    code, out = run("get", "configmap", "nginx-configmap", "-n", "mesh-external", "-o", "yaml")
    assert code == 0 and "  nginx.conf: |\n    events {\n" in out  # kubectl's block style
    saved = tmp_path / "cm.yaml"
    saved.write_text(out)
    assert run("delete", "cm", "nginx-configmap", "-n", "mesh-external")[0] == 0
    code, out = run("apply", "-f", str(saved))
    assert code == 0 and "configmap/nginx-configmap created" in out and "reads only Istio's mesh config" in out
    code, out = run("get", "cm", "nginx-configmap", "-n", "mesh-external", "-o", "jsonpath={.data.nginx\\.conf}")
    assert out == conf.read_text()
    code, out = run("create", "configmap", "nginx-configmap", "-n", "mesh-external", "--from-literal=a=b")
    assert code == 1 and 'configmaps "nginx-configmap" already exists' in out


def test_kube_inject_makes_a_workload_injected_in_any_namespace(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from exitgate.cli.main import build_app, normalize_argv
    from exitgate.inventory import kube_inject

    raw = load_paths([CASES / "sleep.yaml"]).resources[2].raw
    injected_raw = kube_inject(raw)
    assert raw["spec"]["template"]["spec"]["containers"][-1]["name"] == "sleep"  # the input is not changed
    template = injected_raw["spec"]["template"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["sleep", "istio-proxy"]
    assert "sidecar.istio.io/status" in template["metadata"]["annotations"]
    assert template["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"
    assert kube_inject(injected_raw) == injected_raw  # once is enough
    # Istio's docs' `kubectl apply -f <(istioctl kube-inject -f sleep.yaml)`, in a namespace
    # whose Namespace object does not ask for injection.
    out = CliRunner().invoke(build_app(), ["kube-inject", "-f", str(CASES / "sleep.yaml")]).output
    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n---\n"
    res = _pods(ns + out)
    assert [w.name for w in inventory(SLEEP_ONLY, res).mesh.workloads] == ["sleep"]
    assert inventory(SLEEP_ONLY, _pods(ns + (CASES / "sleep.yaml").read_text())).mesh.workloads == []


def test_apply_reads_standard_input_and_pipes_as_kubectl_does(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from exitgate.cli.main import build_app, normalize_argv

    doc = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: from-stdin}\n"
    result = CliRunner().invoke(build_app(), normalize_argv(["apply", "-f", "-", "--state-dir", str(tmp_path / "s")]),
                                input=doc)
    assert (result.exit_code, result.output) == (0, "serviceaccount/from-stdin created\n")
    bad = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\nspec: {}\n"
    result = CliRunner().invoke(build_app(), normalize_argv(["apply", "-f", "-", "--state-dir", str(tmp_path / "s")]),
                                input=bad)
    assert result.exit_code == 1 and "-:4: Error [EG0004]" in result.output
    # A pipe (bash's <(...)) is a file that is not a regular one.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    import threading

    writer = threading.Thread(target=lambda: fifo.write_text(doc.replace("from-stdin", "from-pipe")))
    writer.start()
    result = CliRunner().invoke(build_app(), normalize_argv(["apply", "-f", str(fifo), "--state-dir", str(tmp_path / "s")]))
    writer.join(5)
    assert (result.exit_code, result.output) == (0, "serviceaccount/from-pipe created\n")
