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

from exitgate.api.diagnostics import Diagnostic, has_errors
from exitgate.api.loader import unreadable
from exitgate.capture import NetnsCapture
from exitgate.mesh import load_mesh
from exitgate.cli.common import StateOpt, fail, mesh_inventory, selector_matches, selector_problem, state
from exitgate.runtime import StateDir, clear_current, register_current
from exitgate.store import Store

app = typer.Typer(no_args_is_help=True,
                  help="exitgate: Istio's egress gateway with TLS origination, on one machine.")

FilesOpt = Annotated[list[Path], typer.Option("-f", "--filename", help="File or directory of YAML resources.")]

def _state(state_dir: Path | None, for_up: bool = False) -> StateDir:
    return state(state_dir, for_up=for_up)


def _err() -> Console:
    # soft_wrap: a diagnostic stays one line in logs and pipes, whatever the terminal width.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _print_diagnostics(diags: list[Diagnostic]) -> None:
    err = _err()
    for d in diags:
        style = "red" if d.is_error else "yellow"
        err.print(f"[{style}]{d}[/{style}]", markup=True, soft_wrap=True)


@app.command()
def apply(files: FilesOpt, namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
          state_dir: StateOpt = None) -> None:
    """Create or update resources from YAML files (all or nothing)."""
    from exitgate import handoff
    from exitgate.api import sources
    from exitgate.cli.applying import apply_sources

    texts, problems = sources.read(files)
    if problems:
        raise typer.Exit(handoff.print_answer(
            {"ok": False, "diagnostics": [[True, str(unreadable(path, problem))] for path, problem in problems]}))
    root = _state(state_dir).root
    try:
        # The running control plane parses and stores it, with the store in memory, if one runs.
        answer = handoff.apply(root, texts, namespace)
    except handoff.HandoffError as e:
        raise fail(str(e)) from None
    if answer is None:
        # The command's own process, single-threaded: a large file is loaded on two cores.
        answer = apply_sources(Store(root), texts, namespace, jobs=2)
    raise typer.Exit(handoff.print_answer(answer))


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(ctx: typer.Context, workload: Annotated[str, typer.Argument(help="workload name (or name.namespace, deploy/NAME)")],
          stdin: Annotated[bool, typer.Option("-i", "--stdin", help="kubectl's; the command always has this terminal")] = False,
          tty: Annotated[bool, typer.Option("-t", "--tty", help="kubectl's; the command always has this terminal")] = False,
          container: Annotated[Optional[str], typer.Option("-c", "--container",
                                                           help="kubectl's; the command runs as the workload (its "
                                                                "traffic through the sidecar) whichever is named")] = None,
          namespace: Annotated[Optional[str], typer.Option("-n", "--namespace")] = None,
          state_dir: StateOpt = None) -> None:
    """Run a command as WORKLOAD: its HTTP traffic goes through the workload's sidecar.
    Example: exitgate exec sleep -- curl -sS http://edition.cnn.com/politics"""
    cmd = list(ctx.args)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise fail("you must specify at least one command for the workload (after --)", 2)
    info = _state(state_dir).read_runtime()
    if info is None:
        raise fail("exitgate is not running here (start it with `exitgate up`)")
    target = workload.removeprefix("deploy/").removeprefix("pod/")
    proxy = info.proxy(f"{target}.{namespace}" if namespace and "." not in target else target)
    if proxy is None or proxy.role != "sidecar":
        raise fail(f'no workload "{workload}" (workloads: '
                   f'{", ".join(p.name for p in info.proxies if p.role == "sidecar")})')
    if proxy.netns:
        if sys.stderr.isatty():
            _err().print(f"exitgate: {proxy.name}.{proxy.namespace} runs captured in network namespace {proxy.netns}: "
                         "all its TCP goes through its sidecar", style="dim")
        argv = NetnsCapture.exec_argv(proxy.netns, cmd)
        _exec(argv, workload_env(os.environ, None), cmd[0])
    if sys.stderr.isatty():
        _err().print(f"exitgate: {proxy.name}.{proxy.namespace} runs without capture: http_proxy and https_proxy "
                     f"point at its sidecar (127.0.0.1:{proxy.proxy_port})", style="dim")
    _exec(cmd, workload_env(os.environ, proxy.proxy_port), cmd[0])


def _exec(argv: list[str], env: dict[str, str], command: str) -> None:
    """Replace this process with the command; one that cannot run is refused as kubectl's
    container runtime refuses it (exit 127 not found, 126 not executable)."""
    import shutil

    if "/" not in command and shutil.which(command, path=env.get("PATH")) is None:
        raise fail(f'exec: "{command}": executable file not found in $PATH', 127)
    try:
        os.execvpe(argv[0], argv, env)
    except PermissionError:
        raise fail(f'exec: "{command}": permission denied', 126) from None
    except OSError as e:
        raise fail(f'exec: "{command}": {e.strerror}', 127) from None


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
def logs(proxy: Annotated[Optional[str], typer.Argument(help="proxy name (or name.namespace, deploy/NAME)")] = None,
         selector: Annotated[Optional[str], typer.Option("-l", "--selector", help="label selector, e.g. app=sleep")] = None,
         namespace: Annotated[Optional[str], typer.Option("-n", "--namespace")] = None,
         tail: Annotated[int, typer.Option("--tail", help="lines from the end; -1 for all")] = -1,
         follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
         container: Annotated[Optional[str], typer.Option("-c", "--container",
                                                          help="istio-proxy: the proxy's log (the only one)")] = None,
         state_dir: StateOpt = None) -> None:
    """Print a proxy's log: Envoy's messages and its access log (Istio's format)."""
    if container is not None and container != "istio-proxy":
        # The docs' `kubectl logs ... -c istio-proxy` is the proxy's; an application container's
        # output is the command's own, run with `exitgate exec`.
        raise fail(f'exitgate keeps the log of the istio-proxy container only, not of "{container}": a '
                   f"workload's process is the command you run with `exitgate exec`, its output yours")
    state = _state(state_dir)
    info = state.read_runtime()
    paths: list[Path] = []
    if selector is not None:
        if proxy:
            raise fail("only one of a proxy name or a selector (-l) can be given")
        if info is None:
            raise fail("exitgate is not running here (start it with `exitgate up`)")
        problem = selector_problem(selector)
        if problem:
            raise fail(problem)
        mesh_labels = _proxy_labels(state)
        paths = [Path(p.log_path) for p in info.proxies
                 if (namespace is None or p.namespace == namespace)
                 and selector_matches(selector, mesh_labels.get((p.deployment or p.name, p.namespace), {}))]
        if not paths:
            typer.echo(f"No resources found in {namespace or 'any'} namespace.", err=True)
            return
    else:
        if not proxy:
            raise fail("give a proxy name or a selector (-l)")
        name = proxy.removeprefix("deploy/").removeprefix("pod/")
        rec = info.proxy(f"{name}.{namespace}" if namespace and "." not in name else name) if info else None
        path = Path(rec.log_path) if rec else None
        if path is None:
            candidates = sorted(state.log_dir.glob(f"{name}.*.log")) + sorted(state.log_dir.glob(f"{name}.log"))
            path = candidates[0] if candidates else None
        if path is None or not path.exists():
            raise fail(f'no logs for proxy "{proxy}"')
        paths = [path]
    for path in paths:
        lines = path.read_text(errors="replace").splitlines()
        for line in lines if tail < 0 else lines[len(lines) - tail:] if tail else []:
            typer.echo(line)
    if follow:
        _follow(paths)


def _proxy_labels(state: StateDir) -> dict[tuple[str, str], dict[str, str]]:
    """The labels of each gateway and workload of the running mesh (``logs -l``): the mesh
    file's and the applied Deployments' and Pods'."""
    config = mesh_inventory(state)
    return {**{(g.name, g.namespace): g.labels for g in config.gateways},
            **{(w.name, w.namespace): w.labels for w in config.workloads}}


def _follow(paths: list[Path]) -> None:
    files = [p.open() for p in paths]
    for f in files:
        f.seek(0, 2)
    try:
        while True:
            got = False
            for f in files:
                line = f.readline()
                if line:
                    typer.echo(line, nl=False)
                    got = True
            if not got:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for f in files:
            f.close()


@app.command()
def version(state_dir: StateOpt = None) -> None:
    """The exitgate version, and the running control plane's and proxies' (as istioctl version)."""
    from exitgate import __version__
    from exitgate.runtime import NoStateDir, resolve_state_dir

    typer.echo(f"client version: {__version__}")
    try:
        info = StateDir(resolve_state_dir(state_dir)).read_runtime()
    except NoStateDir:
        info = None
    if info is None:
        typer.echo("control plane version: none running")
        return
    typer.echo(f"control plane version: {__version__}")
    envoy = _envoy_version()
    typer.echo(f"data plane version: {envoy} ({len(info.proxies)} proxies)")


def _envoy_version() -> str:
    import re
    import subprocess

    from exitgate.envoy.supervisor import find_envoy

    try:
        out = subprocess.run([find_envoy(), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return f"envoy {m.group(1)}" if m else "unknown"


@app.command()
def completion(shell: Annotated[str, typer.Argument(help="bash, zsh or fish")]) -> None:
    """Print the shell completion script (``source <(exitgate completion bash)``)."""
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        raise fail(f'unsupported shell type "{shell}" (bash, zsh or fish)')
    typer.echo(get_completion_script(prog_name="exitgate", complete_var="_EXITGATE_COMPLETE", shell=shell))


@app.command()
def up(mesh: Annotated[Optional[Path], typer.Option("--mesh", help="mesh file: gateways, workloads, services, DNS")] = None,
       state_dir: StateOpt = None) -> None:
    """Run the control plane and every proxy in the foreground. Ctrl-C stops everything."""
    from exitgate.controlplane import ControlPlane

    state = _state(state_dir, for_up=True)
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
        register_current(state.root, os.getpid())  # commands run elsewhere find this `up`
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
        clear_current(os.getpid())


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
    from exitgate.cli import analyze, debug, kubectl, offline, secrets

    if not any(g.name == "create" for g in app.registered_groups):  # once, however often called
        kubectl.register(app)
        secrets.register(app)
        analyze.register(app)
        debug.register(app)
        offline.register(app)
    return app


# Options kubectl users put anywhere, before the verb too (``exitgate -n istio-system create
# secret ...``): taken out and given to the verb, which has them all.
_ANYWHERE = {"-n": "--namespace", "--namespace": "--namespace", "--state-dir": "--state-dir"}


def normalize_argv(argv: list[str]) -> list[str]:
    """Move ``-n NS``/``--namespace NS``/``--state-dir DIR`` given before the verb's own
    arguments to after them (before ``--``), where Click parses them for the verb."""
    head, sep, rest = (argv[:argv.index("--")], ["--"], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [], [])
    moved: list[str] = []
    kept: list[str] = []
    i = 0
    while i < len(head):
        arg = head[i]
        name, eq, value = arg.partition("=")
        if name in _ANYWHERE and (eq or i + 1 < len(head)):
            moved += [_ANYWHERE[name], value if eq else head[i + 1]]
            i += 1 if eq else 2
            continue
        kept.append(arg)
        i += 1
    return [*kept, *moved, *sep, *rest]


def main() -> None:
    build_app()(args=normalize_argv(sys.argv[1:]), prog_name="exitgate")


if __name__ == "__main__":
    main()
