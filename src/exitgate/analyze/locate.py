"""Exact lines for diagnostics: re-reads a resource's file with ruamel.yaml (once per file) and
finds the line of a field path inside the document that starts at the resource's line. Falls
back to the document's line when the file cannot be read or the path is not there.

This is the one part of ``analyze`` that reads files; analyzers never call it (the CLI passes a
``FileLocator`` to ``analyze``)."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

from ruamel.yaml import YAML

from exitgate.analyze.model import Path
from exitgate.api.loader import locate


def _doc_line(doc: Any) -> int | None:
    lc = getattr(doc, "lc", None)
    return lc.line + 1 if lc is not None and lc.line is not None else None


class FileLocator:
    def __init__(self) -> None:
        self._docs: dict[str, dict[int, Any]] = {}

    def _load(self, file: str) -> dict[int, Any]:
        if file not in self._docs:
            by_line: dict[int, Any] = {}
            try:
                for doc in YAML(typ="rt").load_all(FsPath(file).read_text(encoding="utf-8")):
                    line = _doc_line(doc)
                    if line is not None:
                        by_line[line] = doc
            except Exception:  # unreadable or changed since it was loaded: keep document lines
                by_line = {}
            self._docs[file] = by_line
        return self._docs[file]

    def __call__(self, file: str, doc_line: int, path: Path) -> int:
        doc = self._load(file).get(doc_line)
        if doc is None or not path:
            return doc_line
        return locate(doc, path) or doc_line
