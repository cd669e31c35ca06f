"""The ``exitgate`` command: kubectl- and istioctl-like verbs over the state directory.

``up`` runs the control plane and proxies in the foreground; the other verbs work on the
store (``apply``, ``delete``, ``get``) or on what ``up`` is running (``exec``, ``logs``).
"""

from __future__ import annotations

import os
import sys
import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from exitgate.api.core import SecretSpec
from exitgate.api.diagnostics import Diagnostic, has_errors
from exitgate.api.loader import CORE_MODELS, SPEC_MODELS, load_paths
from exitgate.api.resources import Resource
from exitgate.capture import NetnsCapture
from exitgate.mesh import load_mesh
from exitgate.runtime import StateDir, default_state_dir
from exitgate.store import Store

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="exitgate: Istio's egress gateway with TLS origination, on one machine.")

StateOpt = Annotated[Optional[Path], typer.Option("--state-dir", envvar="EXITGATE_HOME",
                                                  help="State directory (default: ./.exitgate).")]
FilesOpt = Annotated[list[Path], typer.Option("-f", "--filename", help="File or directory of YAML resources.")]

GROUP = "networking.istio.io"
KIND_ALIASES = {
    "serviceentry": "ServiceEntry", "serviceentries": "ServiceEntry", "se": "ServiceEntry",
    "gateway": "Gateway", "gateways": "Gateway", "gw": "Gateway",
    "virtualservice": "VirtualService", "virtualservices": "VirtualService", "vs": "VirtualService",
    "destinationrule": "DestinationRule", "destinationrules": "DestinationRule", "dr": "DestinationRule",
    "sidecar": "Sidecar", "sidecars": "Sidecar",
    "authorizationpolicy": "AuthorizationPolicy", "authorizationpolicies": "AuthorizationPolicy", "ap": "AuthorizationPolicy",
    "secret": "Secret", "secrets": "Secret",
    "configmap": "ConfigMap", "configmaps": "ConfigMap", "cm": "ConfigMap",
}


def _state(state_dir: Path | None) -> StateDir:
    return StateDir(state_dir or default_state_dir())


def _err() -> Console:
    # soft_wrap: a diagnostic stays one line in logs and pipes, whatever the terminal width.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _print_diagnostics(diags: list[Diagnostic]) -> None:
    err = _err()
    for d in diags:
        style = "red" if d.is_error else "yellow"
        err.print(f"[{style}]{d}[/{style}]", markup=True, soft_wrap=True)


def _kind_name(kind: str) -> str:
    """kubectl's name for a kind: ``secret``, ``serviceentry.networking.istio.io``."""
    if kind in CORE_MODELS:
        return kind.lower()
    return f"{kind.lower()}.{SPEC_MODELS[kind][0] if kind in SPEC_MODELS else GROUP}"


def _kind_ref(r: Resource) -> str:
    return f"{_kind_name(r.kind)}/{r.name}"


@app.command()
def apply(files: FilesOpt, namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
          state_dir: StateOpt = None) -> None:
    """Create or update resources from YAML files (all or nothing)."""
    loaded = load_paths(files, default_namespace=namespace)
    _print_diagnostics(loaded.diagnostics)
    if not loaded.ok:
        _err().print("error: nothing was applied", style="red")
        raise typer.Exit(1)
    result = Store(_state(state_dir).root).apply(loaded.resources)
    _print_diagnostics(list(result.diagnostics))
    if not result.ok:
        _err().print("error: nothing was applied", style="red")
        raise typer.Exit(1)
    for r, what in result.changes:
        typer.echo(f"{_kind_ref(r)} {what}")


@app.command()
def delete(files: FilesOpt, namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
           state_dir: StateOpt = None) -> None:
    """Delete the resources named in YAML files."""
    loaded = load_paths(files, default_namespace=namespace)
    _print_diagnostics(loaded.diagnostics)
    if not loaded.ok:
        _err().print("error: nothing was deleted", style="red")
        raise typer.Exit(1)
    result = Store(_state(state_dir).root).delete([r.key for r in loaded.resources])
    for r, _ in result.changes:
        typer.echo(f'{_kind_name(r.kind)} "{r.name}" deleted')
    for d in result.diagnostics:
        _err().print(f"Error from server (NotFound): {d.resource} not found", style="red")
    if result.diagnostics:
        raise typer.Exit(1)


@app.command()
def get(kind: Annotated[str, typer.Argument(help="serviceentry|gateway|virtualservice|destinationrule|all")],
        name: Annotated[Optional[str], typer.Argument()] = None,
        namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
        all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
        output: Annotated[str, typer.Option("-o", "--output", help="table (default) or yaml")] = "table",
        state_dir: StateOpt = None) -> None:
    """List applied resources, like kubectl get."""
    # "all" leaves Secrets out, as kubectl's does.
    kinds = list(SPEC_MODELS) if kind == "all" else [KIND_ALIASES.get(kind.lower(), "")]
    if not kinds[0]:
        _err().print(f'error: the server doesn\'t have a resource type "{kind}"', style="red")
        raise typer.Exit(1)
    snap = Store(_state(state_dir).root).load()
    found = [r for r in snap.resources if r.kind in kinds and (all_namespaces or r.namespace == namespace)
             and (name is None or r.name == name)]
    if name is not None and not found:
        _err().print(f'Error from server (NotFound): {_kind_name(kinds[0])} "{name}" not found', style="red")
        raise typer.Exit(1)
    if output == "yaml":
        import yaml

        docs = [r.raw for r in found]
        typer.echo(yaml.safe_dump(docs[0] if name else {"apiVersion": "v1", "kind": "List", "items": docs},
                                  sort_keys=False), nl=False)
        return
    if not found:
        _err().print(f"No resources found in {namespace} namespace.")
        return
    table = Table(box=None, pad_edge=False)
    if all_namespaces:
        table.add_column("NAMESPACE")
    secrets = kinds == ["Secret"]
    # Like kubectl, a Secret's data is never shown in the table: only its type and key count.
    for col in ("NAME", "TYPE", "DATA") if secrets else ("KIND", "NAME", "HOSTS"):
        table.add_column(col)
    for r in found:
        if isinstance(r.spec, SecretSpec):
            row = [r.name, r.spec.type, str(len(r.spec.decoded()))]
        else:
            hosts = getattr(r.spec, "hosts", None) or [getattr(r.spec, "host", "")]
            row = [r.kind, r.name, ",".join(str(h) for h in hosts if h)]
        table.add_row(*([r.namespace] if all_namespaces else []), *row)
    Console(highlight=False).print(table)


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(ctx: typer.Context, workload: Annotated[str, typer.Argument(help="workload name (or name.namespace)")],
          state_dir: StateOpt = None) -> None:
    """Run a command as WORKLOAD: its HTTP traffic goes through the workload's sidecar.
    Example: exitgate exec sleep -- curl -sS http://edition.cnn.com/politics"""
    cmd = list(ctx.args)
    if not cmd:
        _err().print("error: give a command after --", style="red")
        raise typer.Exit(2)
    info = _state(state_dir).read_runtime()
    if info is None:
        _err().print("error: exitgate is not running here (start it with `exitgate up`)", style="red")
        raise typer.Exit(1)
    proxy = info.proxy(workload)
    if proxy is None or proxy.role != "sidecar":
        _err().print(f'error: no workload "{workload}" (workloads: '
                     f'{", ".join(p.name for p in info.proxies if p.role == "sidecar")})', style="red")
        raise typer.Exit(1)
    if proxy.netns:
        if sys.stderr.isatty():
            _err().print(f"exitgate: {proxy.name}.{proxy.namespace} runs captured in network namespace {proxy.netns}: "
                         "all its TCP goes through its sidecar", style="dim")
        argv = NetnsCapture.exec_argv(proxy.netns, cmd)
        os.execvpe(argv[0], argv, workload_env(os.environ, None))
    if sys.stderr.isatty():
        _err().print(f"exitgate: {proxy.name}.{proxy.namespace} runs without capture: http_proxy and https_proxy "
                     f"point at its sidecar (127.0.0.1:{proxy.proxy_port})", style="dim")
    os.execvpe(cmd[0], cmd, workload_env(os.environ, proxy.proxy_port))


PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")


def workload_env(base: "os._Environ[str] | dict[str, str]", proxy_port: int | None) -> dict[str, str]:
    """The environment of a command run as a workload. Captured (``proxy_port`` None), the
    namespace's rules send its traffic to the sidecar, so no proxy variables are set (a user's
    own would bypass nothing, but would make requests look different from a pod's). Without
    capture, plain HTTP goes to the sidecar as a forward-proxy request and HTTPS as a CONNECT
    tunnel, so that both leave through the sidecar. ``EXITGATE_CAPTURE`` says which mode it
    runs in: ``netns`` or ``proxy-env``."""
    env = dict(base)
    for k in ("no_proxy", "NO_PROXY", *PROXY_VARS):
        env.pop(k, None)
    if proxy_port is None:
        env["EXITGATE_CAPTURE"] = "netns"
        return env
    url = f"http://127.0.0.1:{proxy_port}"
    for k in PROXY_VARS:
        env[k] = url
    env["EXITGATE_CAPTURE"] = "proxy-env"
    return env


@app.command()
def logs(proxy: Annotated[str, typer.Argument(help="proxy name (or name.namespace)")],
         tail: Annotated[int, typer.Option("--tail", help="lines from the end; -1 for all")] = -1,
         follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
         state_dir: StateOpt = None) -> None:
    """Print a proxy's log: Envoy's messages and its access log (Istio's format)."""
    state = _state(state_dir)
    info = state.read_runtime()
    rec = info.proxy(proxy) if info else None
    path = Path(rec.log_path) if rec else None
    if path is None:
        candidates = sorted(state.log_dir.glob(f"{proxy}.*.log")) + sorted(state.log_dir.glob(f"{proxy}.log"))
        path = candidates[0] if candidates else None
    if path is None or not path.exists():
        _err().print(f'error: no logs for proxy "{proxy}"', style="red")
        raise typer.Exit(1)
    lines = path.read_text(errors="replace").splitlines()
    for line in lines if tail < 0 else lines[-tail:]:
        typer.echo(line)
    if follow:
        with path.open() as f:
            f.seek(0, 2)
            try:
                while True:
                    line = f.readline()
                    if line:
                        typer.echo(line, nl=False)
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                pass


@app.command()
def up(mesh: Annotated[Optional[Path], typer.Option("--mesh", help="mesh file: gateways, workloads, services, DNS")] = None,
       state_dir: StateOpt = None) -> None:
    """Run the control plane and every proxy in the foreground. Ctrl-C stops everything."""
    from exitgate.controlplane import ControlPlane

    state = _state(state_dir)
    mesh_path = mesh or (state.root / "mesh.yaml" if (state.root / "mesh.yaml").exists() else None)
    config, diags = load_mesh(mesh_path)
    _print_diagnostics(diags)
    if config is None or has_errors(diags):
        raise typer.Exit(1)
    if state.read_runtime() is not None:
        _err().print(f"error: exitgate is already running with state directory {state.root}", style="red")
        raise typer.Exit(1)
    console = Console(highlight=False)
    events: list[str] = []

    def emit(msg: str) -> None:
        events.append(time.strftime("%H:%M:%S ") + msg)
        del events[:-8]
        if not console.is_terminal:
            console.print(events[-1], soft_wrap=True)

    cp = ControlPlane(state, config, emit)
    # SIGTERM stops cleanly like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cp.start()
        ok = cp.wait_ready(30)
        emit("all proxies ready and in sync" if ok else "[yellow]proxies not in sync yet[/yellow]")
        if console.is_terminal:
            with Live(_status_table(cp, events), console=console, refresh_per_second=2) as live:
                cp.run(on_tick=lambda: live.update(_status_table(cp, events)))
        else:
            cp.run()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not interrupt the stop and leave proxies behind; the
        # stop itself is bounded (every proxy gets SIGTERM at once, SIGKILL after 5 s).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        console.print("stopping proxies and control plane...")
        cp.stop()


def _status_table(cp: object, events: list[str]) -> Table:
    from exitgate.controlplane import ControlPlane

    assert isinstance(cp, ControlPlane)
    table = Table(title=f"exitgate — config version {cp.applied_version} — Ctrl-C to stop", caption="\n".join(events),
                  caption_justify="left")
    rows = cp.status_rows()
    for col in rows[0] if rows else []:
        table.add_column(col)
    for row in rows:
        table.add_row(*row.values())
    return table


# Demo scenarios: name -> (module with run_demo(console, keep_state) -> exit status, what it shows).
DEMOS = {
    "tls-origination": ("exitgate.demo.scenario", "Istio's task Egress Gateways with TLS Origination (SIMPLE, MUTUAL)"),
    "asm": ("exitgate.demo.asm", "Alibaba ASM's guide: mTLS origination, REGISTRY_ONLY, DENY at the gateway"),
    "poc": ("exitgate.demo.poc", "the PoC: gateway in its own namespace, Sidecar REGISTRY_ONLY, ALLOW by namespace"),
}


@app.command()
def demo(scenario: Annotated[str, typer.Argument(help="tls-origination (default), asm or poc")] = "tls-origination",
         keep_state: Annotated[bool, typer.Option(help="keep the demo's state directory")] = False) -> None:
    """Run an egress scenario end to end with local stand-ins, its YAML unchanged."""
    import importlib

    if scenario not in DEMOS:
        _err().print(f"error: no demo {scenario!r}; the demos are: "
                  + "; ".join(f"{k} ({v[1]})" for k, v in DEMOS.items()))
        raise typer.Exit(2)
    module = importlib.import_module(DEMOS[scenario][0])
    raise typer.Exit(module.run_demo(Console(highlight=False), keep_state=keep_state))


def build_app() -> typer.Typer:
    """The whole command: the verbs above plus those registered by their own modules."""
    from exitgate.cli import analyze, debug, secrets

    if not any(g.name == "create" for g in app.registered_groups):  # once, however often called
        secrets.register(app)
        analyze.register(app)
        debug.register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
