"""What every verb shares: the ``--state-dir`` option and how a command finds its state
directory (``runtime.resolve_state_dir``), and how a refusal is said."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from exitgate.mesh import MeshConfig
from exitgate.runtime import NoStateDir, StateDir, resolve_state_dir

StateOpt = Annotated[Optional[Path], typer.Option(
    "--state-dir", envvar="EXITGATE_HOME",
    help="State directory (default: .exitgate here or in a parent directory, else the running `exitgate up`'s, "
         "else the per-user default).")]


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def state(state_dir: Path | None, *, for_up: bool = False) -> StateDir:
    try:
        return StateDir(resolve_state_dir(state_dir, for_up=for_up))
    except NoStateDir as e:
        raise fail(str(e)) from None


def mesh_inventory(st: StateDir) -> MeshConfig:
    """The mesh the state directory runs: its mesh file (``mesh.yaml``, else the defaults) with
    what the applied Kubernetes objects declare (``inventory``)."""
    from exitgate.inventory import inventory
    from exitgate.mesh import load_mesh
    from exitgate.store import Store

    mesh_path = st.root / "mesh.yaml"
    config, _ = load_mesh(mesh_path if mesh_path.exists() else None)
    if config is None:
        config = MeshConfig()
    try:
        resources = Store(st.root).load().resources
    except RuntimeError:
        resources = ()
    return inventory(config, resources).mesh


def selector_problem(selector: str) -> str | None:
    """kubectl's equality-based label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``,
    comma-separated (set-based ``in``/``notin`` are not taken yet)."""
    for part in (p.strip() for p in selector.split(",")):
        if not part or " in " in f" {part} " or " notin " in f" {part} " or "(" in part:
            return f"unable to parse requirement: {part!r} (exitgate takes k=v, k!=v, k and !k)"
    return None


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for part in (p.strip() for p in selector.split(",")):
        if "!=" in part:
            key, value = part.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif part.startswith("!"):
            if part[1:].strip() in labels:
                return False
        elif part not in labels:
            return False
    return True
