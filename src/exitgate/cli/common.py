"""What every verb shares: the ``--state-dir`` option and how a command finds its state
directory (``runtime.resolve_state_dir``), and how a refusal is said."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
