"""istioctl's debugging verbs against what ``exitgate up`` runs: ``proxy-status`` (from the
control plane's ``/debug/syncz``) and ``proxy-config cluster|listener|route|endpoint|bootstrap|
log|all`` (from each Envoy's admin port, rendered by ``exitgate.proxyconfig``)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from exitgate import __version__, proxyconfig as pc
from exitgate.cli.common import StateOpt, state
from exitgate.runtime import ProxyRecord, RuntimeInfo

OutputOpt = Annotated[str, typer.Option("-o", "--output", help="short (default), json or yaml")]
ProxyArg = Annotated[str, typer.Argument(help="proxy name (or name.namespace, or deploy/NAME)")]

LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "critical", "off")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def _runtime(state_dir: Path | None) -> RuntimeInfo:
    info = state(state_dir).read_runtime()
    if info is None:
        raise _fail("exitgate is not running here (start it with `exitgate up`, or point --state-dir or "
                    "EXITGATE_HOME at the state directory of the one that runs)")
    return info


def _proxy(state_dir: Path | None, name: str) -> ProxyRecord:
    info = _runtime(state_dir)
    rec = info.proxy(name.removeprefix("deploy/").removeprefix("pod/"))
    if rec is None:
        raise _fail(f'no proxy "{name}"; the proxies are: ' + ", ".join(f"{p.name}.{p.namespace}" for p in info.proxies))
    return rec


def _admin(rec: ProxyRecord, path: str, method: str = "GET") -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{rec.admin_port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(resp.read().decode())
    except OSError as e:
        raise _fail(f"cannot reach {rec.name}.{rec.namespace}'s Envoy admin port {rec.admin_port}: {e}") from None


def _dump(rec: ProxyRecord) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_admin(rec, "/config_dump?include_eds"))
    return data


def _print(output: str, headers: tuple[str, ...], rows: list[list[str]], raw: Any, padding: int = 5) -> None:
    if output == "json":
        typer.echo(json.dumps(raw, indent=4))
    elif output == "yaml":
        typer.echo(yaml.safe_dump(raw, sort_keys=False), nl=False)
    elif output == "short":
        typer.echo(pc.tabwrite(headers, rows, padding), nl=False)
    else:
        raise _fail(f'output format "{output}" not supported')


def _syncz(info: RuntimeInfo) -> list[dict[str, Any]]:
    if not info.monitoring_port:
        raise _fail("the running control plane reports no monitoring port (started by an older exitgate?)")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{info.monitoring_port}/debug/syncz", timeout=10) as resp:
            data: list[dict[str, Any]] = json.loads(resp.read())
    except OSError as e:
        raise _fail(f"cannot reach the control plane's monitoring port {info.monitoring_port}: {e}") from None
    return data


def status_rows(syncz: list[dict[str, Any]], istiod: str, namespace: str | None = None) -> list[list[str]]:
    # Here, not at the top: the monitoring module (and prometheus_client) is 30 ms of every
    # CLI command's start, and only proxy-status needs it.
    from exitgate.monitoring import STATUS_TYPES, type_status

    rows = []
    for p in sorted(syncz, key=lambda p: f"{p['name']}.{p['namespace']}"):
        if not p.get("connected") or (namespace and p["namespace"] != namespace):
            continue
        types = p.get("types", {})
        rows.append([f"{p['name']}.{p['namespace']}", "Kubernetes", *(type_status(types.get(t)) for t in STATUS_TYPES),
                     istiod, __version__])
    return rows


def mesh_config_sets(sets: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``istioctl install --set`` values as Istio's meshConfig (``meshConfig.a.b=v`` -> {a: {b: v}},
    values read as YAML scalars), and the problems; ``profile=`` is taken and left alone."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(f"--set {item!r}: expected KEY=VALUE")
        elif key == "profile":
            continue  # exitgate's components are its mesh file's, whichever profile
        elif not key.startswith("meshConfig.") or key == "meshConfig.":
            problems.append(f"--set {key}: exitgate takes meshConfig.* (its Istio ConfigMap) and profile; the rest "
                            "of an install (components, values) is exitgate's mesh file")
        else:
            node = out
            *parents, leaf = key.split(".")[1:]
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = yaml.safe_load(value) if value else ""
    return out, problems


def register(app: typer.Typer) -> None:
    group = next(g.typer_instance for g in app.registered_groups if g.name == "proxy-config")
    assert group is not None

    @app.command()
    def install(sets: Annotated[list[str], typer.Option("--set", help="meshConfig.KEY=VALUE (and profile=NAME)")] = [],  # noqa: B006
                skip_confirmation: Annotated[bool, typer.Option("-y", "--skip-confirmation", help="istioctl's")] = False,
                state_dir: StateOpt = None) -> None:
        """istioctl install --set meshConfig...: writes Istio's mesh ConfigMap (istio in
        istio-system), which a running mesh reads at once; as an install, it replaces the
        meshConfig set before (``--set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY``,
        ``--set meshConfig.accessLogFile=/dev/stdout``)."""
        from exitgate.api.loader import load_document
        from exitgate.api.meshconfig import MESH_CONFIGMAP, MESH_KEY
        from exitgate.store import Store

        config, problems = mesh_config_sets(sets)
        if problems:
            for problem in problems:
                typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(1)
        ns, name = MESH_CONFIGMAP
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
               "data": {MESH_KEY: yaml.safe_dump(config, sort_keys=False) if config else ""}}
        resource, diags = load_document(doc, "istioctl install --set")
        for d in diags:
            typer.echo(str(d), err=True)
        if resource is None:
            raise typer.Exit(1)
        result = Store(state(state_dir).root).apply([resource])
        if not result.ok:
            typer.echo("; ".join(map(str, result.diagnostics)), err=True)
            raise typer.Exit(1)
        typer.echo(f"\u2714 meshConfig applied (ConfigMap {ns}/{name})" + (
            ": " + ", ".join(s for s in sets if s.startswith("meshConfig.")) if config else ""))
        typer.echo("\u2714 Installation complete")

    @app.command("proxy-status")
    def proxy_status(namespace: Annotated[Optional[str], typer.Option("-n", "--namespace")] = None,
                     output: Annotated[str, typer.Option("-o", "--output", help="table (default), json or yaml")] = "table",
                     state_dir: StateOpt = None) -> None:
        """Every proxy and whether it holds the control plane's configuration, per xDS type:
        SYNCED, NOT SENT, STALE (sent, not acknowledged yet), ERROR (rejected), IGNORED."""
        info = _runtime(state_dir)
        syncz = _syncz(info)
        if output in ("json", "yaml"):
            raw = [p for p in syncz if not namespace or p["namespace"] == namespace]
            typer.echo(json.dumps(raw, indent=4) if output == "json" else yaml.safe_dump(raw, sort_keys=False), nl=output == "json")
            return
        if output not in ("table", "short"):
            raise _fail(f'output format "{output}" not supported')
        for p in syncz:
            if not p.get("connected"):
                typer.echo(f"{p['name']}.{p['namespace']} is not connected to the control plane", err=True)
        from exitgate.monitoring import STATUS_TYPES

        headers = ("NAME", "CLUSTER", *STATUS_TYPES, "ISTIOD", "VERSION")
        typer.echo(pc.tabwrite(headers, status_rows(syncz, f"exitgate-{info.pid}", namespace)), nl=False)

    @app.command("dashboard")
    def dashboard(open_browser: Annotated[bool, typer.Option("--open/--no-open", help="open it in a browser")] = True,
                  state_dir: StateOpt = None) -> None:
        """The web view of the running control plane: egress traffic, proxies, certificates,
        configuration changes (like istioctl dashboard, it serves on the control plane's port)."""
        info = _runtime(state_dir)
        if not info.monitoring_port:
            raise _fail("the running control plane reports no monitoring port (started by an older exitgate?)")
        url = f"http://127.0.0.1:{info.monitoring_port}/"
        typer.echo(url)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    @group.command("cluster")
    def cluster(proxy: ProxyArg, fqdn: Annotated[str, typer.Option("--fqdn")] = "",
                port: Annotated[int, typer.Option("--port")] = 0, subset: Annotated[str, typer.Option("--subset")] = "",
                direction: Annotated[str, typer.Option("--direction")] = "", output: OutputOpt = "short",
                state_dir: StateOpt = None) -> None:
        """The proxy's clusters: service FQDN, port, subset, direction, type, DestinationRule."""
        f = pc.ClusterFilter(fqdn, port, subset, direction)
        dump = _dump(_proxy(state_dir, proxy))
        _print(output, pc.CLUSTER_HEADERS, pc.cluster_rows(dump, f), pc.clusters(dump, f))

    @group.command("listener")
    def listener(proxy: ProxyArg, address: Annotated[str, typer.Option("--address")] = "",
                 port: Annotated[int, typer.Option("--port")] = 0, type_: Annotated[str, typer.Option("--type")] = "",
                 verbose: Annotated[bool, typer.Option("--verbose/--no-verbose")] = True, output: OutputOpt = "short",
                 state_dir: StateOpt = None) -> None:
        """The proxy's listeners, one row per filter chain: what it matches, where it goes."""
        f = pc.ListenerFilter(address, port, type_)
        dump = _dump(_proxy(state_dir, proxy))
        rows = pc.listener_rows(dump, f, verbose)
        raw = [x for x in pc.listeners(dump) if pc.listener_rows({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "static_listeners": [{"listener": x}]}]}, f)]
        _print(output, pc.LISTENER_HEADERS if verbose else pc.LISTENER_SHORT_HEADERS, rows, raw, padding=1)

    @group.command("route")
    def route(proxy: ProxyArg, name: Annotated[str, typer.Option("--name")] = "",
              verbose: Annotated[bool, typer.Option("--verbose/--no-verbose")] = True, output: OutputOpt = "short",
              state_dir: StateOpt = None) -> None:
        """The proxy's route tables, one row per route: virtual host, domains, match, VirtualService."""
        dump = _dump(_proxy(state_dir, proxy))
        _print(output, pc.ROUTE_HEADERS if verbose else pc.ROUTE_SHORT_HEADERS, pc.route_rows(dump, name, verbose),
               pc.routes(dump, name))

    @group.command("endpoint")
    def endpoint(proxy: ProxyArg, address: Annotated[str, typer.Option("--address")] = "",
                 port: Annotated[int, typer.Option("--port")] = 0, cluster: Annotated[str, typer.Option("--cluster")] = "",
                 status: Annotated[str, typer.Option("--status")] = "", output: OutputOpt = "short",
                 state_dir: StateOpt = None) -> None:
        """The endpoints of the proxy's clusters, their health and outlier state."""
        f = pc.EndpointFilter(address, port, cluster, status)
        data = json.loads(_admin(_proxy(state_dir, proxy), "/clusters?format=json"))
        raw = [cs for cs in data.get("cluster_statuses", [])
               if pc.endpoint_rows({"cluster_statuses": [cs]}, f)]
        _print(output, pc.ENDPOINT_HEADERS, pc.endpoint_rows(data, f), raw)

    @group.command("bootstrap")
    def bootstrap(proxy: ProxyArg, output: Annotated[str, typer.Option("-o", "--output", help="json (default) or yaml")] = "json",
                  state_dir: StateOpt = None) -> None:
        """The bootstrap the proxy started with."""
        boot = pc.bootstrap(_dump(_proxy(state_dir, proxy)))
        if output not in ("json", "yaml"):
            raise _fail(f'output format "{output}" not supported')
        _print(output, (), [], boot)

    @group.command("log")
    def log(proxy: ProxyArg,
            level: Annotated[str, typer.Option("--level", help="LEVEL for all loggers, or logger:LEVEL,... ")] = "",
            reset: Annotated[bool, typer.Option("-r", "--reset", help="back to warning")] = False,
            output: OutputOpt = "short", state_dir: StateOpt = None) -> None:
        """Show or set the proxy's Envoy log levels (istioctl proxy-config log)."""
        if output != "short":
            raise _fail("--output is not applicable for this command")
        if level and reset:
            raise _fail("--level cannot be combined with --reset")
        rec = _proxy(state_dir, proxy)
        known = _admin(rec, "/logging", "POST")
        loggers = {ln.strip().split(":")[0] for ln in known.splitlines()[1:] if ":" in ln}
        calls = [("level", "warning")] if reset else []
        for part in filter(None, level.split(",")):
            name, sep, value = part.replace("=", ":").rpartition(":")
            lvl = (value if sep else part).lower()
            if lvl not in LOG_LEVELS:
                raise _fail(f"unrecognized logging level: {lvl}")
            if sep:
                name = name.split("::")[-1]
                if name not in loggers:
                    raise _fail(f"unrecognized logger name: {name}")
                calls.append((name, lvl))
            else:
                calls.insert(0, ("level", lvl))
        body = known
        for key, value in calls:
            body = _admin(rec, "/logging?" + urllib.parse.urlencode({key: "warning" if value == "warn" else value}), "POST")
        typer.echo(f"{rec.name}.{rec.namespace}:")
        typer.echo(body, nl=False)

    @group.command("all")
    def all_(proxy: ProxyArg, output: OutputOpt = "short", state_dir: StateOpt = None) -> None:
        """Clusters, listeners and routes; with -o json the whole config dump."""
        rec = _proxy(state_dir, proxy)
        dump = _dump(rec)
        if output != "short":
            _print(output, (), [], dump)
            return
        typer.echo(pc.tabwrite(pc.CLUSTER_HEADERS, pc.cluster_rows(dump)))
        typer.echo(pc.tabwrite(pc.LISTENER_HEADERS, pc.listener_rows(dump), padding=1))
        typer.echo(pc.tabwrite(pc.ROUTE_HEADERS, pc.route_rows(dump)), nl=False)
