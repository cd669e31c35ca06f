"""What every verb shares: the ``--state-dir`` option and how a command finds its state
directory (``runtime.resolve_state_dir``), and how a refusal is said."""

from __future__ import annotations

import re
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


_SET_REQUIREMENT = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*$")


def _requirements(selector: str) -> list[tuple[str, str, tuple[str, ...]]] | str:
    """kubectl's label selector as (key, operator, values): ``k=v``/``k==v`` (=), ``k!=v`` (!=),
    ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not); or the problem."""
    parts, depth, current = [], 0, ""
    for ch in selector:  # split at the commas outside parentheses
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for part in (p.strip() for p in parts):
        m = _SET_REQUIREMENT.match(part)
        if m:
            out.append((m.group(1), m.group(2), tuple(v.strip() for v in m.group(3).split(",") if v.strip())))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            out.append((key.strip(), "!=", (value.strip(),)))
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            out.append((key.strip(), "=", (value.strip(),)))
        elif part.startswith("!") and part[1:].strip():
            out.append((part[1:].strip(), "!", ()))
        elif part and " " not in part and "(" not in part and ")" not in part:
            out.append((part, "exists", ()))
        else:
            return f"unable to parse requirement: {part!r}"
    return out


def selector_problem(selector: str) -> str | None:
    found = _requirements(selector)
    return found if isinstance(found, str) else None


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    found = _requirements(selector)
    if isinstance(found, str):
        return False
    for key, op, values in found:
        have = labels.get(key)
        if op == "=" and have != values[0] or op == "!=" and have == values[0]:
            return False
        if op == "in" and have not in values or op == "notin" and have in values:
            return False
        if op == "exists" and key not in labels or op == "!" and key in labels:
            return False
    return True
