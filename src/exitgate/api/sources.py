"""Which files ``-f`` names, and their text: kubectl's rules (a file, a directory's YAML files
sorted and recursively, ``-`` for standard input, a pipe). Imports nothing heavy: the CLI reads
what it applies before it knows whether a running control plane will parse it."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

YAML_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


def expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files as given, directories expanded to their YAML files; and (path, problem) for each
    path that names nothing."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p)
        if str(p) == STDIN:
            files.append(path)  # kubectl's `-f -`: the documents on standard input
        elif path.is_dir():
            files.extend(sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in YAML_SUFFIXES))
        elif path.is_file() or path.exists():  # a pipe too: `-f <(istioctl kube-inject ...)`
            files.append(path)
        else:
            problems.append((str(path), "no such file or directory"))
    return files, problems


def read(paths: Iterable[str | Path]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(file name, text) of each file ``paths`` names, in order; and (path, problem) for each
    path that names nothing or cannot be read."""
    files, problems = expand(paths)
    sources: list[tuple[str, str]] = []
    for f in files:
        try:
            text = sys.stdin.read() if str(f) == STDIN else f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append((str(f), f"cannot read: {e}"))
            continue
        sources.append((str(f), text))
    return sources, problems
