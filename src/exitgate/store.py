"""The configuration store: a state directory holding the applied resources as a versioned
snapshot file, replaced atomically, and the journal of the changes written since (``storefile``).

``apply`` and ``delete`` compute the whole change, validate it, and only then write it, under an
exclusive lock: the whole snapshot (a temporary file, fsync, rename) where they have it all in
hand, or, in the running control plane, which knows the stored version without reading it, one
record appended to the journal (fsync). A bad batch therefore changes nothing, and a crash
leaves the old version or the new one, never half of one. The running control plane watches the
version and re-translates when it changes.
"""

from __future__ import annotations

import bisect
import fcntl
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import yaml

from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.base import share_alike, shared_string
from exitgate.api.loader import CLUSTER_SCOPED, SPEC_MODELS, load_document, load_text
from exitgate.api.resources import Resource, Source
from exitgate.gcpause import gc_paused
from exitgate.privatefs import ensure_private_dir, write_private_atomic
from exitgate.storefile import (
    ChangeResult as ChangeResult, Delta as Delta, Entry as _Entry, Key, Read, Snapshot as Snapshot, Stamp,
    StoreFileError, dump as _dump, journal_header, parse_journal, parse_snapshot, render_record, render_snapshot, stamp,
)  # the store's API (Snapshot, ChangeResult, Delta) is named here as before
from exitgate.wake import wake

SNAPSHOT_FILE = "config.yaml"
JOURNAL_FILE = "config.journal"
# The journal is folded into a new snapshot once it would hold more than this and more than a
# quarter of the snapshot: what every command that reads the store parses beside it stays small.
JOURNAL_MAX = 4 << 20
LOCK_FILE = "store.lock"


@dataclass
class _Known:
    """What a resident Store knows of the files as it last read or wrote them, so that an apply
    neither reads them nor rebuilds the snapshot whole."""

    stamps: tuple[Stamp | None, Stamp | None]
    version: int
    base_version: int
    journal_end: int
    journal_line: int
    keys: list[Key]  # the stored documents', sorted (each one's text and resource: Store._parsed)


class _Parsed(NamedTuple):
    """A stored document as parsed: its text's length and hash (what tells it changed), whether
    it is JSON (else YAML an earlier exitgate wrote, compared by content), the resource's line
    inside the document, and the resource, with its file and line in the store."""

    length: int
    digest: int
    json: bool
    offset: int
    resource: Resource


class Store:
    """``apply`` and ``delete`` work on the stored documents as text (the markers give the
    keys), so a change costs one read and one write however large the store; ``load`` parses
    only the documents it has not seen before (a running control plane keeps one Store, so a
    reload after a small change validates only what changed)."""

    def __init__(self, state_dir: Path, keep_documents: bool = True, resident: bool = False) -> None:
        """``keep_documents`` False (the control plane's): an Istio resource keeps only its
        metadata beside its typed spec (what translation reads), not the whole document too:
        a sixth of the resources' memory at 30,000. Kubernetes objects keep theirs (the
        inventory reads pod templates and annotations). ``resident`` (the control plane's,
        which applies what the CLI hands it): this Store remembers what the files hold as it
        last read or wrote them, so an apply appends to the journal without reading anything,
        and the load of the version it wrote reads and parses nothing."""
        self.state_dir = state_dir
        self.resident = resident
        self.path = state_dir / SNAPSHOT_FILE
        self.journal = state_dir / JOURNAL_FILE
        self.keep_documents = keep_documents
        # Each distinct set of fields given, once (see api.base.share_alike).
        self._field_sets: dict[frozenset[str], set[str]] = {}
        # Each stored document as parsed (``_Parsed``), by key: a document whose text has the
        # same length and hash is not parsed again. Not the text itself: 30,000 documents' text
        # kept only for this was 20 MiB of the control plane. A changed document the same length
        # as before and with the same 64-bit hash of its text is not a practical case.
        self._parsed: dict[Key, _Parsed] = {}
        # The last snapshot built, and the stamps of the files it is the snapshot of: a reload
        # of unchanged files, or of ones this Store wrote itself, reads and parses nothing.
        self._snapshot: Snapshot | None = None
        self._snapshot_stamps: tuple[Stamp | None, Stamp | None] | None = None
        self._known: _Known | None = None

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

    def _stamps(self) -> tuple[Stamp | None, Stamp | None]:
        return stamp(self.path), stamp(self.journal)

    def version(self) -> int:
        """The stored version: the snapshot's first line (``# version: N``), or the journal's
        last record over it."""
        known = self._known
        if known is not None and known.stamps == self._stamps():
            return known.version
        journal = self._journal_text()  # first, as _read does
        records, _ = self._journal_records(journal, self._base_version())
        return records[-1].version if records else self._base_version()

    def _base_version(self) -> int:
        try:
            with open(self.path, encoding="utf-8") as f:
                first = f.readline()
        except FileNotFoundError:
            first = ""
        return int(first.split(":", 1)[1]) if first.startswith("# version:") else 0

    def _journal_text(self) -> str | None:
        try:
            # A record a crash cut inside a character is left out whole: not an error here.
            return self.journal.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def _journal_records(self, text: str | None, base_version: int) -> tuple[list[Any], int]:
        """The journal's complete records over ``base_version``, and the bytes they take."""
        if text is None:
            return [], 0
        try:
            records, end = parse_journal(text, str(self.journal), base_version, CLUSTER_SCOPED)
        except StoreFileError as e:
            raise RuntimeError(str(e)) from None
        return records, len(text[:end].encode())  # the complete records are whole UTF-8

    def _read(self) -> Read:
        # The journal first: a snapshot written meanwhile (which removes the journal) is then
        # newer than the journal read, which counts for nothing over it; read the other way
        # round, an old snapshot and no journal would go back several versions.
        journal = self._journal_text()
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        base, entries = self._split(text) if text else (0, [])
        records, end = self._journal_records(journal, base)
        version = base
        if records:
            by_key = {e.key: e for e in entries}
            for rec in records:
                for e in rec.upserts:
                    by_key[e.key] = e
                for k in rec.deletes:
                    by_key.pop(k, None)
                version = rec.version
            entries = sorted(by_key.values(), key=lambda e: e.key)
        return Read(version, entries, base, end, 2 + sum(r.lines for r in records))  # after the header

    def _split(self, text: str) -> tuple[int, list[_Entry]]:
        try:
            version, entries = parse_snapshot(text, str(self.path), CLUSTER_SCOPED)
        except StoreFileError as e:
            raise RuntimeError(str(e)) from None
        if not entries and any(ln.strip() and not ln.startswith("#") for ln in text.splitlines()):
            return version, self._legacy(text)
        return version, entries

    def _legacy(self, text: str) -> list[_Entry]:
        """A snapshot written before the markers: parsed once, in full, to be rewritten."""
        result = load_text(text, str(self.path))
        if not result.ok:
            raise RuntimeError("stored configuration is invalid:\n" + "\n".join(map(str, result.diagnostics)))
        return [_Entry(r.key, _dump(r.raw), 0) for r in result.resources]

    def load(self, field_lines: bool = False) -> Snapshot:
        """The stored resources. ``field_lines``: each resource's fields keep their own lines
        in the file (YAML parsing with marks, for diagnostics that point into the snapshot);
        otherwise a resource's line is its document's first, and loading is fast."""
        if field_lines:
            return self._load_with_lines()
        with gc_paused():
            stamps = self._stamps()
            if self._snapshot is not None and stamps == self._snapshot_stamps:
                return self._snapshot
            read = self._read()
            snapshot = self._snapshot_of(read.version, read.entries, parse=True)
            assert snapshot is not None
            # Not written while it was read: the snapshot is of the files with these stamps.
            self._snapshot_stamps = stamps if self._stamps() == stamps else None
            if self.resident:
                self._known = self._know(read, snapshot) if self._snapshot_stamps is not None else None
            return snapshot

    def _know(self, read: Read, snapshot: Snapshot) -> _Known:
        assert self._snapshot_stamps is not None
        return _Known(self._snapshot_stamps, read.version, read.base_version, read.journal_end, read.journal_line,
                      [e.key for e in read.entries])

    def _snapshot_of(self, version: int, entries: list[_Entry], parse: bool,
                     delta: Delta | None = None) -> Snapshot | None:
        """The snapshot of ``entries``, parsing those not parsed before (``parse``), else None
        when there is one."""
        resources: list[Resource] = []
        seen: dict[Key, _Parsed] = {}
        path = str(self.path)
        parsed = self._parsed
        for e in entries:
            length, digest = len(e.text), hash(e.text)
            p = parsed.get(e.key)
            if p is None or p.length != length or p.digest != digest:
                if not parse:
                    return None
                res = self._parse(e)
                offset = res.source.line if res.source and res.source.line else 1
                p = _Parsed(length, digest, e.text.startswith("{"), offset, res)
            source = Source(e.file or path, p.offset + e.line)
            if p.resource.source != source:  # new, or moved (the journal folded into a snapshot)
                p = p._replace(resource=p.resource.with_source(source))
            seen[e.key] = p
            resources.append(p.resource)
        # Keep what this version holds, so the next load parses only what is new; each resource
        # once, in the snapshot and here.
        self._parsed = seen
        self._snapshot = Snapshot(version, tuple(resources), delta)
        return self._snapshot

    def _load_with_lines(self) -> Snapshot:
        with gc_paused():
            read = self._read()
            resources = []
            for e in read.entries:
                res = self._parse_yaml(e)
                line = (res.source.line if res.source else 1) + e.line
                resources.append(replace(res, source=Source(e.file or str(self.path), line)))
        return Snapshot(read.version, tuple(resources))

    def _parse(self, e: _Entry) -> Resource:
        if not e.text.startswith("{"):
            return self._slim(self._parse_yaml(e))  # written as YAML by an earlier exitgate
        # Loaded with the source (the file, line 1) that _snapshot_of offsets by the entry's line.
        res, diags = load_document(orjson.loads(e.text), e.file or str(self.path), default_namespace=e.key[1],
                                   checked=True)
        if res is None or dx.has_errors(diags):
            raise self._invalid(e, diags)
        first = Source(e.file or str(self.path), 1)
        return self._slim(res if res.source == first else res.with_source(first))

    def _slim(self, res: Resource) -> Resource:
        if self.keep_documents:
            return res
        if res.kind not in SPEC_MODELS:
            # Kubernetes objects (Secrets): kept whole, no credential in the shared strings.
            share_alike(res.spec, self._field_sets, strings=False)
            return res
        share_alike(res.spec, self._field_sets)
        # The identity's strings too: 30,000 copies of the same apiVersion, kind and namespace.
        api_version, kind = shared_string(res.api_version), shared_string(res.kind)
        namespace = shared_string(res.namespace)
        metadata = res.raw.get("metadata")
        if isinstance(metadata, dict):
            metadata = {k: shared_string(v) if type(v) is str else v for k, v in metadata.items()}
        return res.with_identity(api_version, kind, namespace,
                                 {"apiVersion": api_version, "kind": kind, "metadata": metadata})

    def _parse_yaml(self, e: _Entry) -> Resource:
        result = load_text(e.text, e.file or str(self.path))
        if not result.ok or len(result.resources) != 1:
            raise self._invalid(e, result.diagnostics)
        return result.resources[0]

    def _invalid(self, e: _Entry, diags: Iterable[Diagnostic]) -> RuntimeError:
        # Only exitgate writes these files, after validating them; a failure here is a bug or tampering.
        return RuntimeError(f"stored configuration is invalid at {e.file or self.path}:{e.line}:\n"
                            + "\n".join(map(str, diags)))

    def _write(self, version: int, entries: Iterable[_Entry], delta: Delta | None = None) -> None:
        """The whole snapshot, replacing the journal."""
        text, written = render_snapshot(version, entries)
        try:
            write_private_atomic(self.path, text.encode())
        except BaseException:
            self._forget()
            raise
        # After the snapshot: a crash in between leaves a journal over an older version, which
        # counts for nothing.
        self.journal.unlink(missing_ok=True)
        stamps = self._stamps()
        self._snapshot, self._snapshot_stamps, self._known = None, None, None
        if self.resident:
            snapshot = self._snapshot_of(version, written, parse=False, delta=delta)
            if snapshot is not None:
                # The new version's snapshot from what this Store knows, as it knows every
                # document (those it loaded before, those it applied).
                self._snapshot_stamps = stamps
                self._known = self._know(Read(version, written, version, 0, 2), snapshot)
        wake(self.state_dir)  # a running control plane reads the new version now

    def _forget(self) -> None:
        """After a write that failed: what this Store knew of the files may be wrong; the next
        load or apply reads them whole."""
        self._parsed, self._known, self._snapshot, self._snapshot_stamps = {}, None, None, None

    def _append(self, known: _Known, upserts: list[tuple[Resource, _Entry]], base: int,
                changes: tuple[tuple[Resource, str], ...]) -> None:
        """One record at the end of the journal (a resident Store that knows the files)."""
        version = known.version + 1
        path = str(self.journal)
        text, written = render_record(version, [e for _, e in upserts], (), known.journal_line, path)
        fresh = known.journal_end == 0
        if fresh:
            text = journal_header(known.base_version) + text  # line 1; the record begins on line 2
        data = text.encode()
        try:
            fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o600)
            try:
                # A record a crash cut short is cut off here, before the new one.
                os.ftruncate(fd, known.journal_end)
                os.lseek(fd, known.journal_end, os.SEEK_SET)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if fresh:
                dir_fd = os.open(self.state_dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except BaseException:
            self._forget()
            raise
        for (r, _), e in zip(upserts, written):
            if e.key not in self._parsed:
                bisect.insort(known.keys, e.key)
            self._parsed[e.key] = _Parsed(len(e.text), hash(e.text), True, 1,
                                          self._slim(r.with_source(Source(path, 1 + e.line))))
        # The change as stored (slim, with its place in the journal), not the batch as parsed.
        delta = Delta(base, tuple((self._parsed[r.key].resource, what) for r, what in changes), ())
        known.version = version
        known.journal_end += len(data)
        known.journal_line += text.count("\n") - (1 if fresh else 0)
        known.stamps = self._stamps()
        self._snapshot = Snapshot(version, tuple(self._parsed[k].resource for k in known.keys), delta)
        self._snapshot_stamps = known.stamps
        wake(self.state_dir)

    def apply(self, batch: list[Resource]) -> ChangeResult:
        with gc_paused():
            # Paused from here: with 30,000 resources just loaded, collections set off by
            # these 30,000 keys walked them all again and again (1.9 s).
            return self._apply(batch)

    def _appendable(self, batch: list[Resource]) -> _Known | None:
        """What this Store knows of the files, if an apply of ``batch`` can be a journal record."""
        known = self._known
        if known is None or known.stamps != self._stamps():
            return None
        if known.stamps[0] is not None and self._base_version() != known.base_version:
            # A snapshot another process wrote in the same clock tick, the same size, reusing the
            # inode: its version says it is another.
            return None
        if any(r.key in self._parsed and not self._parsed[r.key].json for r in batch):
            return None  # a document stored as YAML is compared by content, read whole
        return known

    def _journal_room(self, known: _Known) -> int:
        """How much more the journal may take before it is folded into a new snapshot."""
        snapshot_size = known.stamps[0][2] if known.stamps[0] is not None else 0
        return max(JOURNAL_MAX, snapshot_size // 4) - known.journal_end

    def _apply(self, batch: list[Resource]) -> ChangeResult:
        counts = Counter(r.key for r in batch)
        dups = {k for k, n in counts.items() if n > 1}
        if dups:
            diags = tuple(
                Diagnostic(dx.DUPLICATE, Severity.ERROR, "the same resource appears twice in this batch",
                           file=r.source.file if r.source else None, line=r.source.line if r.source else None,
                           resource=r.ref)
                for r in batch if r.key in dups
            )
            return ChangeResult(None, (), diags)
        with self._locked():
            known = self._appendable(batch)
            appended = self._apply_known(known, batch) if known is not None else None
            if appended is not None:
                return appended
            read = self._read()
            version = read.version
            by_key = {e.key: e for e in read.entries}
            changes: list[tuple[Resource, str]] = []
            for r in batch:
                old = by_key.get(r.key)
                text = _dump(_comparable(r.raw))
                if old is None:
                    changes.append((r, "created"))
                elif old.text == text or (not old.text.startswith("{") and _same_yaml(old.text, r.raw)):
                    changes.append((r, "unchanged"))
                else:
                    changes.append((r, "configured"))
                by_key[r.key] = _Entry(r.key, text, 0)
                if self.resident:
                    # Known as if this Store had read it back (as _parse makes it): a later
                    # load of this version parses nothing.
                    self._parsed[r.key] = _Parsed(len(text), hash(text), True, 1,
                                                  self._slim(r.with_source(Source(str(self.path), 1))))
            if all(c == "unchanged" for _, c in changes):
                return ChangeResult(version, tuple(changes), (), self)
            # The change as stored (slim), not the batch as parsed.
            done = tuple((self._parsed[r.key].resource if self.resident else r, c) for r, c in changes
                         if c != "unchanged")
            self._write(version + 1, by_key.values(), Delta(version, done, ()))
            return ChangeResult(version + 1, tuple(changes), (), self)

    def _apply_known(self, known: _Known, batch: list[Resource]) -> ChangeResult | None:
        """The apply as a journal record; None when it is too large for the journal (the whole
        snapshot is written instead)."""
        changes: list[tuple[Resource, str]] = []
        upserts: list[tuple[Resource, _Entry]] = []
        for r in batch:
            text = _dump(_comparable(r.raw))
            old = self._parsed.get(r.key)
            if old is None:
                changes.append((r, "created"))
            elif (old.length, old.digest) == (len(text), hash(text)):
                changes.append((r, "unchanged"))
                continue
            else:
                changes.append((r, "configured"))
            upserts.append((r, _Entry(r.key, text, 0)))
        if not upserts:
            return ChangeResult(known.version, tuple(changes), (), self)
        if sum(len(e.text) for _, e in upserts) > self._journal_room(known):
            return None
        base = known.version
        self._append(known, upserts, base, tuple((r, c) for r, c in changes if c != "unchanged"))
        return ChangeResult(base + 1, tuple(changes), (), self)

    def delete(self, keys: list[Key]) -> ChangeResult:
        with self._locked(), gc_paused():
            read = self._read()
            version = read.version
            by_key = {e.key: e for e in read.entries}
            changes: list[tuple[Resource, str]] = []
            diags: list[Diagnostic] = []
            gone = [k for k in keys if k in by_key]
            # What is deleted is reported as a resource: parsed from the stored text.
            parsed = {k: self._parse_yaml(by_key[k]) for k in gone}
            for k in keys:
                entry = by_key.pop(k, None)
                if entry is None:
                    diags.append(Diagnostic(dx.NOT_FOUND, Severity.WARNING, "not found", resource=f"{k[0]} {k[1]}/{k[2]}"))
                elif k in parsed:
                    changes.append((parsed[k], "deleted"))
            if not changes:
                return ChangeResult(version, (), tuple(diags), self)
            self._write(version + 1, by_key.values(), Delta(version, (), tuple(r.key for r, _ in changes)))
            return ChangeResult(version + 1, tuple(changes), tuple(diags), self)


def _same_yaml(text: str, raw: dict[str, Any]) -> bool:
    """A document an earlier exitgate stored as YAML, compared by content (its text differs)."""
    return bool(yaml.load(text, Loader=yaml.CSafeLoader) == orjson.loads(_dump(_comparable(raw))))


def _comparable(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "status"}
