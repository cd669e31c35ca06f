"""``exitgate analyze``: istioctl analyze for exitgate — the applied configuration (the store),
with any ``-f`` files applied on top of it, checked across resources.

Output is istioctl's (``Error [IST0101] (VirtualService default/x file.yaml:12) ...``) or a JSON
or YAML list of diagnostics; the exit status is 1 when any diagnostic is an error (or the input
does not load), 0 otherwise. ``register(app)`` adds the command to a Typer app.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
import yaml

from exitgate.api.diagnostics import Diagnostic, has_errors
from exitgate.api.loader import load_paths
from exitgate.api.resources import Resource
from exitgate.mesh import load_mesh
from exitgate.cli.common import StateOpt
from exitgate.runtime import DEFAULT_STATE_DIR, NoStateDir, resolve_state_dir
from exitgate.store import Store

OUTPUTS = ("text", "json", "yaml")


def format_text(d: Diagnostic) -> str:
    """istioctl's line: ``Level [CODE] (Kind ns/name file:line) message``."""
    inside = " ".join(x for x in (d.resource, d.place()) if x)
    return f"{d.severity.value} [{d.code}] " + (f"({inside}) " if inside else "") + d.message


def format_list() -> str:
    from exitgate.analyze import ANALYZERS

    width = max(len(a.name) for a in ANALYZERS)
    return "\n".join(f"{a.code:<7}  {a.name:<{width}}  {a.description}" for a in ANALYZERS)


def merge(base: list[Resource] | tuple[Resource, ...], top: list[Resource]) -> list[Resource]:
    """``base`` with ``top`` applied on it: same kind, namespace and name replaces."""
    by_key = {r.key: r for r in base}
    for r in top:
        by_key[r.key] = r
    return list(by_key.values())


def _fail(lines: list[str]) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


def analyze_command(
    files: Annotated[Optional[list[Path]], typer.Option("-f", "--filename",
                                                        help="File or directory of YAML resources, applied on top of the store.")] = None,
    mesh: Annotated[Optional[Path], typer.Option("--mesh", help="Mesh file (default: STATE_DIR/mesh.yaml if present).")] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text, json or yaml")] = "text",
    list_: Annotated[bool, typer.Option("--list", help="List the analyzers and exit.")] = False,
    use_store: Annotated[bool, typer.Option("--use-store/--no-use-store",
                                            help="Include the applied configuration (like istioctl's --use-kube).")] = True,
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="Namespace of resources in files that name none.")] = "default",
    state_dir: StateOpt = None,
) -> None:
    """Check the configuration across resources, with Istio's analyzer codes (IST0101...) and
    exitgate's (EG01xx). Exits 1 when an error is found."""
    if list_:
        typer.echo(format_list())
        return
    if output not in OUTPUTS:
        _fail([f"error: unknown output format {output!r} (expected one of: {', '.join(OUTPUTS)})"])
    try:
        root = resolve_state_dir(state_dir)
    except NoStateDir as e:
        if not files:
            _fail([f"error: {e}"])
        root, use_store = Path(DEFAULT_STATE_DIR), False  # only the files: there is no store to add
    mesh_path = mesh or (root / "mesh.yaml" if (root / "mesh.yaml").exists() else None)
    config, mesh_diags = load_mesh(mesh_path)
    if config is None or has_errors(mesh_diags):
        _fail([str(d) for d in mesh_diags])
    what: list[str] = []
    resources: list[Resource] = []
    load_warnings: list[Diagnostic] = []
    if use_store:
        try:
            snap = Store(root).load(field_lines=True)
        except RuntimeError as e:
            _fail([f"error: {e}"])
        resources = list(snap.resources)
        what.append(f"the applied configuration (version {snap.version})")
    unparsed: set[str] = set()
    if files:
        loaded = load_paths(files, default_namespace=namespace, keep_unsupported=True, keep_invalid=True)
        load_warnings = [d for d in loaded.diagnostics if not d.is_error]
        # As istioctl: what does not load is reported, everything else is analyzed, and the
        # exit status says some of it could not be read.
        for d in loaded.diagnostics:
            if d.is_error:
                typer.echo(str(d), err=True)
                unparsed.add(d.file or "?")
        resources = merge(resources, loaded.resources)
        what.append(", ".join(str(f) for f in files))
    # Imported here: every other command starts without the analyzers (a fifth of a second).
    from exitgate.analyze import analyze
    from exitgate.analyze.locate import FileLocator

    diags = load_warnings + analyze(resources, config, now=datetime.now(timezone.utc), locate=FileLocator())
    if output == "json":
        typer.echo(json.dumps([d.to_dict() for d in diags], indent=2))
    elif output == "yaml":
        typer.echo(yaml.safe_dump([d.to_dict() for d in diags], sort_keys=False), nl=False)
    elif diags:
        for d in diags:
            typer.echo(format_text(d))
    elif unparsed:
        n = len(unparsed)
        typer.echo(f"No validation issues found when analyzing {' and '.join(what) or 'nothing'} "
                   f"(but {n} {'file' if n == 1 else 'files'} could not be parsed).")
    else:
        typer.echo(f"\u2714 No validation issues found when analyzing {' and '.join(what) or 'nothing'}.")
    if has_errors(diags) or unparsed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to ``app``."""
    app.command(name="analyze")(analyze_command)
