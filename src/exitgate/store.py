"""The configuration store: a state directory holding the applied resources as one versioned
snapshot file, replaced atomically.

``apply`` and ``delete`` compute the whole next snapshot, validate it, and only then replace the
file (write to a temporary file, fsync, rename), under an exclusive lock. A bad batch therefore
changes nothing, and a crash leaves either the old or the new snapshot, never half of one. The
running control plane watches the version and re-translates when it changes.
"""

from __future__ import annotations

import fcntl
import io
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.loader import load_text
from exitgate.api.resources import Resource

SNAPSHOT_FILE = "config.yaml"
LOCK_FILE = "store.lock"


@dataclass(frozen=True)
class Snapshot:
    version: int
    resources: tuple[Resource, ...]

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        for r in self.resources:
            if r.key == (kind, namespace, name):
                return r
        return None


@dataclass(frozen=True)
class ChangeResult:
    """What an apply/delete did: per resource "created", "configured", "unchanged", "deleted",
    or "not found"; nothing is written when ``diagnostics`` has an error."""

    snapshot: Snapshot | None
    changes: tuple[tuple[Resource, str], ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not dx.has_errors(self.diagnostics)


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_private_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (the snapshot will hold Secrets)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / SNAPSHOT_FILE

    @contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_private_dir(self.state_dir)
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def version(self) -> int:
        """The stored version, read cheaply from the first line (``# version: N``)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                first = f.readline()
        except FileNotFoundError:
            return 0
        return int(first.split(":", 1)[1]) if first.startswith("# version:") else 0

    def load(self) -> Snapshot:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Snapshot(0, ())
        version = int(text.split("\n", 1)[0].split(":", 1)[1]) if text.startswith("# version:") else 0
        result = load_text(text, str(self.path))
        if not result.ok:
            # Only exitgate writes this file, after validating it; a failure here is a bug or tampering.
            raise RuntimeError("stored configuration is invalid:\n" + "\n".join(map(str, result.diagnostics)))
        return Snapshot(version, tuple(result.resources))

    def _write(self, version: int, resources: list[Resource]) -> Snapshot:
        y = YAML(typ="safe", pure=True)
        y.default_flow_style = False
        buf = io.StringIO()
        buf.write(f"# version: {version}\n# written by exitgate; edit with `exitgate apply` / `delete`\n")
        y.dump_all([r.raw for r in resources], buf)
        write_private_atomic(self.path, buf.getvalue().encode())
        return self.load()

    def apply(self, batch: list[Resource]) -> ChangeResult:
        keys = [r.key for r in batch]
        dups = {k for k in keys if keys.count(k) > 1}
        if dups:
            diags = tuple(
                Diagnostic(dx.DUPLICATE, Severity.ERROR, "the same resource appears twice in this batch",
                           file=r.source.file if r.source else None, line=r.source.line if r.source else None,
                           resource=r.ref)
                for r in batch if r.key in dups
            )
            return ChangeResult(None, (), diags)
        with self._locked():
            current = self.load()
            by_key = {r.key: r for r in current.resources}
            changes: list[tuple[Resource, str]] = []
            for r in batch:
                old = by_key.get(r.key)
                if old is None:
                    changes.append((r, "created"))
                elif _comparable(old.raw) == _comparable(r.raw):
                    changes.append((r, "unchanged"))
                else:
                    changes.append((r, "configured"))
                by_key[r.key] = r
            if all(c == "unchanged" for _, c in changes):
                return ChangeResult(current, tuple(changes), ())
            snap = self._write(current.version + 1, _ordered(by_key.values()))
            return ChangeResult(snap, tuple(changes), ())

    def delete(self, keys: list[tuple[str, str, str]]) -> ChangeResult:
        with self._locked():
            current = self.load()
            by_key = {r.key: r for r in current.resources}
            changes: list[tuple[Resource, str]] = []
            diags: list[Diagnostic] = []
            for k in keys:
                r = by_key.pop(k, None)
                if r is None:
                    diags.append(Diagnostic(dx.NOT_FOUND, Severity.WARNING, "not found", resource=f"{k[0]} {k[1]}/{k[2]}"))
                else:
                    changes.append((r, "deleted"))
            if not changes:
                return ChangeResult(current, (), tuple(diags))
            snap = self._write(current.version + 1, _ordered(by_key.values()))
            return ChangeResult(snap, tuple(changes), tuple(diags))


def _comparable(raw: dict[str, object]) -> object:
    return {k: v for k, v in raw.items() if k != "status"}


def _ordered(resources: Iterable[Resource]) -> list[Resource]:
    return sorted(resources, key=lambda r: r.key)
