"""Sidecar scope and the outbound traffic policy, as Istio computes them: which Sidecar applies
to a workload, what its egress hosts import, and what a host no service declares gets. Checked
on the translated sidecar (which virtual hosts, routes and clusters it is given), not on bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from exitgate import names
from exitgate.api.loader import load_text
from exitgate.ir import ProxyConfig, VirtualHost
from exitgate.mesh import MeshConfig, OutboundTrafficPolicy, WorkloadProxy, default_egress_gateway
from exitgate.translate.scope import HostImports, sidecar_for
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot

SLEEP = WorkloadProxy(name="sleep", namespace="default", service_account="sleep", labels={"app": "sleep"})
CURL = WorkloadProxy(name="curl", namespace="default", service_account="curl", labels={"app": "curl"})
OTHER = WorkloadProxy(name="other", namespace="other", service_account="other", labels={"app": "sleep"})


def se(name: str, host: str, namespace: str = "default", export: str = "") -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            f"spec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: DNS\n{export}")


def sidecar(name: str, namespace: str, hosts: list[str] | None = None, selector: dict[str, str] | None = None,
            mode: str | None = None, port: int | None = None) -> str:
    spec = ""
    if selector is not None:
        spec += "  workloadSelector:\n    labels: {" + ", ".join(f"{k}: {v}" for k, v in selector.items()) + "}\n"
    if hosts is not None:
        port_part = f"\n    port: {{number: {port}, protocol: HTTP, name: http}}" if port else ""
        spec += "  egress:\n  - hosts: [" + ", ".join(f'"{h}"' for h in hosts) + "]" + port_part + "\n"
    if mode:
        spec += f"  outboundTrafficPolicy: {{mode: {mode}}}\n"
    return f"apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"


BASE = [se("a", "a.example.com"), se("b", "b.example.com"), se("c", "c.other.com", "other"),
        se("d", "d.example.org", "shared")]


def snapshot(*docs: str, mesh: MeshConfig | None = None) -> Snapshot:
    loaded = load_text("---\n".join(docs), "case.yaml")
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return Snapshot(loaded.resources, mesh or MeshConfig(workloads=[SLEEP, CURL, OTHER]))


def translated(snap: Snapshot, workload: WorkloadProxy = SLEEP) -> ProxyConfig:
    pc, diags = translate_sidecar(snap, workload, 15001)
    assert not diags
    return pc


def hosts_of(pc: ProxyConfig) -> set[str]:
    return {c.name.split("|")[3] for c in pc.clusters if c.name.count("|") == 3}


def catch_all(pc: ProxyConfig) -> VirtualHost:
    return pc.route_configs[0].virtual_hosts[-1]


# --- egress hosts --------------------------------------------------------------------------------

@pytest.mark.parametrize(("hosts", "seen"), [
    (["*/*"], {"a.example.com", "b.example.com", "c.other.com", "d.example.org"}),
    (["./*"], {"a.example.com", "b.example.com"}),
    (["other/*"], {"c.other.com"}),
    (["./a.example.com"], {"a.example.com"}),
    (["*/*.example.com"], {"a.example.com", "b.example.com"}),
    (["*/*.com"], {"a.example.com", "b.example.com", "c.other.com"}),
    (["~/*"], set()),
    (["*/*", "~/b.example.com"], {"a.example.com", "c.other.com", "d.example.org"}),
    (["./*", "shared/d.example.org"], {"a.example.com", "b.example.com", "d.example.org"}),
    (["other/a.example.com"], set()),  # a.example.com is declared in default, not other
])
def test_egress_hosts_import_services_by_namespace_and_host(hosts: list[str], seen: set[str]) -> None:
    pc = translated(snapshot(*BASE, sidecar("default", "default", hosts)))
    assert hosts_of(pc) - {default_egress_gateway().service_host} == seen


def test_no_sidecar_sees_everything_exported_to_its_namespace() -> None:
    private = se("p", "private.example.com", "other", export="  exportTo: [.]\n")
    pc = translated(snapshot(*BASE, private))
    assert "private.example.com" not in hosts_of(pc)
    assert {"a.example.com", "c.other.com"} <= hosts_of(pc)
    assert "private.example.com" in hosts_of(translated(snapshot(*BASE, private), OTHER))


def test_a_scoped_sidecar_gets_only_the_routes_and_clusters_it_may_see() -> None:
    pc = translated(snapshot(*BASE, sidecar("default", "default", ["./a.example.com"])))
    domains = [d for v in pc.route_configs[0].virtual_hosts for d in v.domains]
    assert "a.example.com" in domains and "b.example.com" not in domains
    assert [c.name for c in pc.clusters if "example" in c.name] == [names.cluster_name("a.example.com", 80)]


def test_virtual_service_destinations_are_imported_with_it() -> None:
    vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: via-gw, namespace: default}\n"
          "spec:\n  hosts: [a.example.com]\n  http:\n  - route:\n    - destination:\n"
          "        host: istio-egressgateway.istio-system.svc.cluster.local\n        port: {number: 80}\n")
    pc = translated(snapshot(*BASE, vs, sidecar("default", "default", ["./a.example.com"])))
    # Not imported by the hosts, but the selected VirtualService routes there: Istio adds it.
    assert default_egress_gateway().service_host in hosts_of(pc)
    vhost = next(v for v in pc.route_configs[0].virtual_hosts if "a.example.com" in v.domains)
    assert vhost.routes[0].clusters[0].cluster == names.cluster_name(default_egress_gateway().service_host, 80)


def test_an_egress_listener_with_a_port_imports_that_port_only() -> None:
    two_ports = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: t, namespace: default}\n"
                 "spec:\n  hosts: [t.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}, "
                 "{number: 8080, name: alt, protocol: HTTP}]\n  resolution: DNS\n")
    pc = translated(snapshot(two_ports, sidecar("default", "default", ["./t.example.com"], port=8080)))
    assert [c.name for c in pc.clusters if "t.example.com" in c.name] == [names.cluster_name("t.example.com", 8080)]


# --- which Sidecar applies -----------------------------------------------------------------------

def test_precedence_selector_then_namespace_default_then_root_default() -> None:
    by_selector = sidecar("for-sleep", "default", ["./a.example.com"], selector={"app": "sleep"})
    ns_default = sidecar("default", "default", ["./b.example.com"])
    root_default = sidecar("default", "istio-system", ["*/d.example.org"])
    snap = snapshot(*BASE, by_selector, ns_default, root_default)
    assert [sidecar_for(snap, w).name for w in (SLEEP, CURL, OTHER)] == ["for-sleep", "default", "default"]
    assert [sidecar_for(snap, w).namespace for w in (SLEEP, CURL, OTHER)] == ["default", "default", "istio-system"]
    assert hosts_of(translated(snap, SLEEP)) == {"a.example.com"}
    assert hosts_of(translated(snap, CURL)) == {"b.example.com"}
    assert hosts_of(translated(snap, OTHER)) == {"d.example.org"}


def test_a_selector_in_another_namespace_or_not_matching_does_not_apply() -> None:
    elsewhere = sidecar("s", "other", ["./*"], selector={"app": "curl"})
    snap = snapshot(*BASE, elsewhere, sidecar("t", "default", ["./*"], selector={"app": "nothing"}))
    assert sidecar_for(snap, CURL) is None and sidecar_for(snap, SLEEP) is None


def test_host_imports_parse_istio_forms() -> None:
    imports = HostImports.parse(["./*", "*/*.wikipedia.org", "~istio-system/*"], "team")
    assert imports.service("team", "x.example.com")
    assert imports.service("anywhere", "en.wikipedia.org") and not imports.service("anywhere", "wikipedia.org")
    assert not imports.service("istio-system", "en.wikipedia.org")  # excluded wins


# --- outbound traffic policy ---------------------------------------------------------------------

def test_allow_any_is_the_default_and_passes_unknown_hosts_through() -> None:
    pc = translated(snapshot(*BASE))
    vhost = catch_all(pc)
    assert (vhost.name, vhost.domains) == (names.ALLOW_ANY_ROUTE, ("*",))
    assert vhost.routes[0].clusters[0].cluster == names.PASSTHROUGH_CLUSTER
    assert {c.name for c in pc.clusters} >= {names.PASSTHROUGH_CLUSTER, names.BLACKHOLE_CLUSTER}
    assert pc.listeners[0].dynamic_forward_proxy


def test_registry_only_answers_unknown_hosts_with_502() -> None:
    mesh = MeshConfig(workloads=[SLEEP], outbound_traffic_policy=OutboundTrafficPolicy(mode="REGISTRY_ONLY"))
    pc = translated(snapshot(*BASE, mesh=mesh))
    route = catch_all(pc).routes[0]
    assert (route.name, route.direct_status, route.clusters) == (names.BLOCK_ALL_ROUTE, 502, ())
    assert names.PASSTHROUGH_CLUSTER not in {c.name for c in pc.clusters}
    assert not pc.listeners[0].dynamic_forward_proxy


def test_a_sidecar_overrides_the_mesh_policy_for_the_workloads_it_selects() -> None:
    only_curl = sidecar("curl-only", "default", selector={"app": "curl"}, mode="REGISTRY_ONLY")
    snap = snapshot(*BASE, only_curl)
    assert catch_all(translated(snap, CURL)).name == names.BLOCK_ALL_ROUTE
    assert catch_all(translated(snap, SLEEP)).name == names.ALLOW_ANY_ROUTE
    # Without egress listeners the Sidecar keeps the default scope.
    assert {"a.example.com", "c.other.com"} <= hosts_of(translated(snap, CURL))


def test_istios_configmap_sets_the_mesh_policy() -> None:
    cm = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
          "data:\n  mesh: |\n    outboundTrafficPolicy:\n      mode: REGISTRY_ONLY\n")
    assert catch_all(translated(snapshot(*BASE, cm))).name == names.BLOCK_ALL_ROUTE
    allow = sidecar("allow", "default", mode="ALLOW_ANY")
    assert catch_all(translated(snapshot(*BASE, cm, allow))).name == names.ALLOW_ANY_ROUTE


def test_configmap_fields_are_reported_and_other_configmaps_kept() -> None:
    # Another ConfigMap (the tasks' nginx.conf) is kept as Kubernetes keeps it; `apply` says
    # that only the mesh config is read.
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config}\ndata: {a: b}\n"
    loaded = load_text(other, "cm.yaml")
    assert loaded.ok and loaded.diagnostics == [] and [r.ref for r in loaded.resources] == ["ConfigMap default/app-config"]
    bad_mode = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                "data:\n  mesh: |\n    outboundTrafficPolicy: {mode: CLOSED}\n")
    loaded = load_text(bad_mode, "cm.yaml")
    assert [(d.code, d.line, d.field) for d in loaded.diagnostics] == [("EG0005", 5, "data.mesh")]
    assert "outboundTrafficPolicy.mode" in loaded.diagnostics[0].message


def test_https_ports_and_unknown_hosts_take_connect_tunnels() -> None:
    https = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s, namespace: default}\n"
             "spec:\n  hosts: [secure.example.com]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n"
             "  resolution: DNS\n")
    pc = translated(snapshot(https))
    assert pc.listeners[0].connect
    vhost = next(v for v in pc.route_configs[0].virtual_hosts if v.domains == ("secure.example.com:443",))
    assert ([w.cluster for w in vhost.connect_clusters], vhost.routes) == ([names.cluster_name("secure.example.com", 443)], ())
    assert [w.cluster for w in catch_all(pc).connect_clusters] == [names.PASSTHROUGH_CLUSTER]
    mesh = MeshConfig(workloads=[SLEEP], outbound_traffic_policy=OutboundTrafficPolicy(mode="REGISTRY_ONLY"))
    blocked = catch_all(translated(snapshot(https, mesh=mesh)))
    assert (blocked.connect_clusters, blocked.connect_status) == ((), 502)


def test_the_mesh_configmap_sets_the_access_log_as_istioctl_install_does() -> None:
    """``istioctl install --set meshConfig.accessLogFile=/dev/stdout`` (Istio's way to turn the
    access log on) and its encoding: Istio's ConfigMap wins over the mesh file while applied."""
    def cm(mesh_text: str) -> str:
        body = "\n".join("    " + line for line in mesh_text.splitlines())
        return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n{body}\n"

    quiet = MeshConfig(workloads=[SLEEP], access_log=False)
    assert not translated(snapshot(*BASE, mesh=quiet)).listeners[0].access_log
    on = snapshot(*BASE, cm("accessLogFile: /dev/stdout\naccessLogEncoding: JSON"), mesh=quiet)
    assert on.mesh.access_log and on.mesh.access_log_encoding == "JSON"
    assert translated(on).listeners[0].access_log
    off = snapshot(*BASE, cm('accessLogFile: ""'))
    assert not off.mesh.access_log and not translated(off).listeners[0].access_log
    bad = load_text(cm('accessLogEncoding: JSON\naccessLogFormat: "[%START_TIME%]"'), "cm.yaml")
    assert not bad.ok and "accessLogFormat is not JSON" in bad.diagnostics[0].message
    # The memo gets the same mesh object back while nothing changed: translations stay reusable.
    from exitgate.translate.memo import TranslationMemo

    memo = TranslationMemo()
    loaded = load_text("---\n".join([*BASE, cm("accessLogFile: /dev/stdout")]), "case.yaml").resources
    assert Snapshot(loaded, quiet, memo).mesh is Snapshot(loaded, quiet, memo).mesh


def test_istioctl_install_set_writes_the_mesh_configmap(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from exitgate.cli.main import build_app, normalize_argv
    from exitgate.store import Store

    def run(*argv: str) -> tuple[int, str]:
        result = CliRunner().invoke(build_app(), normalize_argv([*argv, "--state-dir", str(tmp_path / "s")]))
        return result.exit_code, result.output

    # Istio's "Accessing External Services": istioctl install ... REGISTRY_ONLY.
    code, out = run("install", "--set", "profile=demo", "--set", "meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY")
    assert code == 0 and "Installation complete" in out
    snap = Snapshot(Store(tmp_path / "s").load().resources, MeshConfig(workloads=[SLEEP]))
    assert snap.outbound_mode == "REGISTRY_ONLY"
    # An install replaces the meshConfig of the one before, as istioctl's does.
    assert run("install", "--set", "meshConfig.accessLogFile=/dev/stdout")[0] == 0
    snap = Snapshot(Store(tmp_path / "s").load().resources, MeshConfig(workloads=[SLEEP], access_log=False))
    assert (snap.outbound_mode, snap.mesh.access_log) == ("ALLOW_ANY", True)
    code, out = run("install", "--set", "meshConfig.outboundTrafficPolicy.mode=CLOSED")
    assert code == 1 and "outboundTrafficPolicy.mode" in out
    code, out = run("install", "--set", "values.pilot.env.X=1")
    assert code == 1 and "exitgate takes meshConfig.*" in out
    code, out = run("install", "--set", "meshConfig.enableTracing=true")
    assert code == 1 and "enableTracing is not supported by exitgate yet" in out
