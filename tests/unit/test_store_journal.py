"""The store's journal: the control plane's resident Store appends an apply as one record
instead of rewriting the snapshot, every other reader sees the same resources from both files,
a record a crash cut short counts for nothing, and a journal grown large, or any write that has
the whole store in hand, is folded into a new snapshot."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

import exitgate.store as store_module
from exitgate.api.loader import load_text
from exitgate.api.resources import Resource
from exitgate.store import JOURNAL_FILE, SNAPSHOT_FILE, Store


def se(name: str, host: str = "edition.cnn.com", port: int = 443, note: str | None = None) -> Resource:
    """A ServiceEntry; ``note``: an annotation's value (text beyond ASCII, for the journal's bytes)."""
    annotations = f"  annotations:\n    note: \"{note}\"\n" if note is not None else ""
    text = (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n{annotations}spec:\n"
            f"  hosts:\n  - {host}\n  ports:\n  - number: {port}\n    name: tls\n    protocol: TLS\n"
            "  resolution: DNS\n")
    (r,) = load_text(text, f"{name}.yaml").resources
    return r


def resident(root: Path) -> Store:
    s = Store(root, keep_documents=False, resident=True)
    s.load()
    return s


def same(a: Store, b: Store) -> None:
    x, y = a.load(), b.load()
    assert x.version == y.version
    assert x.resources == y.resources
    assert [r.source for r in x.resources] == [r.source for r in y.resources]


def test_a_resident_apply_is_one_record_that_every_reader_sees(tmp_path: Path) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    assert cp.apply([se("a"), se("b")]).version == 1  # the first write: a journal over version 0
    snapshot_before = (root / SNAPSHOT_FILE).exists()
    assert cp.apply([se("c")]).version == 2
    assert cp.apply([se("a", port=8443)]).changes[0][1] == "configured"
    assert not snapshot_before and not (root / SNAPSHOT_FILE).exists()  # never rewritten
    journal = root / JOURNAL_FILE
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    assert journal.read_text().startswith("# journal over version: 0\n--- # version: 1\n")
    reader = Store(root, keep_documents=False)
    same(cp, reader)
    assert reader.version() == 3 and reader.load().get("ServiceEntry", "default", "a").spec.ports[0].number == 8443
    # Each resource points at its document in the journal (its line after the marker).
    lines = journal.read_text().splitlines()
    for r in reader.load().resources:
        assert r.source is not None and r.source.file == str(journal)
        assert lines[r.source.line - 2] == f"--- # ServiceEntry default/{r.name}"
    # Unchanged is told from the digest alone.
    assert cp.apply([se("c")]).changes[0][1] == "unchanged" and cp.version() == 3


def test_a_record_a_crash_cut_short_counts_for_nothing_and_is_cut_off(tmp_path: Path) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a")])
    journal = root / JOURNAL_FILE
    good = journal.read_bytes()
    journal.write_bytes(good + b"--- # version: 2\n--- # ServiceEntry default/b\n{\n  \"apiVersion\"")
    reader = Store(root)
    assert reader.version() == 1 and [r.name for r in reader.load().resources] == ["a"]
    cp = resident(root)  # a control plane started after the crash
    assert cp.apply([se("c")]).version == 2
    text = journal.read_text()
    assert "default/b" not in text and text.startswith(good.decode())
    assert [r.name for r in Store(root).load().resources] == ["a", "c"]


def test_a_write_with_the_whole_store_in_hand_folds_the_journal(tmp_path: Path) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a")])
    cp.apply([se("b")])
    cli = Store(root)  # `exitgate delete`, or `apply` with no control plane running
    assert cli.delete([("ServiceEntry", "default", "a")]).version == 3
    assert not (root / JOURNAL_FILE).exists()
    assert (root / SNAPSHOT_FILE).read_text().startswith("# version: 3\n")
    # The control plane sees the files changed under it, reads them, and appends over version 3.
    assert [r.name for r in cp.load().resources] == ["b"]
    assert cp.apply([se("c")]).version == 4
    assert (root / JOURNAL_FILE).read_text().startswith("# journal over version: 3\n")
    same(cp, Store(root, keep_documents=False))


def test_a_journal_left_over_a_replaced_snapshot_counts_for_nothing(tmp_path: Path) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a")])
    stale = (root / JOURNAL_FILE).read_bytes()
    Store(root).apply([se("b")])  # version 2 as a snapshot; the journal removed
    # A crash between writing the snapshot and removing the journal leaves it behind.
    (root / JOURNAL_FILE).write_bytes(stale)
    assert Store(root).version() == 2
    assert [r.name for r in Store(root).load().resources] == ["a", "b"]


def test_a_grown_journal_is_folded_into_a_new_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "JOURNAL_MAX", 2000)
    root = tmp_path / "state"
    cp = resident(root)
    for i in range(8):
        cp.apply([se(f"s{i}")])
    assert (root / SNAPSHOT_FILE).exists()  # folded at least once
    journal = root / JOURNAL_FILE
    assert not journal.exists() or journal.stat().st_size < 2000 + 700  # the room, and one record past it
    assert cp.version() == 8
    same(cp, Store(root, keep_documents=False))
    assert [r.name for r in Store(root).load().resources] == [f"s{i}" for i in range(8)]


def test_analyze_reads_journal_documents_with_their_fields_lines(tmp_path: Path) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a")])
    (r,) = Store(root).load(field_lines=True).resources
    assert r.source is not None and r.source.file == str(root / JOURNAL_FILE)
    assert (root / JOURNAL_FILE).read_text().splitlines()[r.source.line - 1] == "{"


def test_the_journal_text_round_trips_with_its_lines_and_deletions() -> None:
    from exitgate.storefile import Entry, journal_header, parse_journal, render_record

    a = Entry(("ServiceEntry", "default", "a"), '{\n  "x": 1\n}\n', 0)
    first, wrote = render_record(8, [a], [("DestinationRule", "default", "b")], 2, "J")
    second, _ = render_record(9, [], [("Namespace", "", "old")], 2 + first.count("\n"), "J")
    text = journal_header(7) + first + second
    records, end = parse_journal(text, "J", 7, frozenset({"Namespace"}))
    assert [(r.version, [e.key for e in r.upserts], list(r.deletes)) for r in records] == [
        (8, [a.key], [("DestinationRule", "default", "b")]), (9, [], [("Namespace", "", "old")])]
    assert end == len(text) and records[0].upserts == (wrote[0],)
    assert text.splitlines()[wrote[0].line - 1] == "--- # ServiceEntry default/a"
    # Cut anywhere inside the second record: only the first counts, and the next goes after it.
    for cut in range(len(journal_header(7) + first), len(text) - 1):
        records, end = parse_journal(text[:cut], "J", 7, frozenset({"Namespace"}))
        assert [r.version for r in records] == [8] and end == len(journal_header(7) + first)
    assert parse_journal(text, "J", 6, frozenset()) == ([], 0)  # over another snapshot


def test_a_journal_with_text_beyond_ascii_is_appended_where_it_ends(tmp_path: Path) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a", note="café ☃ 東京")])  # orjson writes these as UTF-8: more bytes than characters
    cp = resident(root)  # a control plane started again: it knows the journal from reading it
    cp.apply([se("b", note="naïve")])
    cp = resident(root)
    cp.apply([se("c")])
    reader = Store(root)
    assert [r.name for r in reader.load().resources] == ["a", "b", "c"] and reader.version() == 3
    assert reader.load().get("ServiceEntry", "default", "a").raw["metadata"]["annotations"]["note"] == "café ☃ 東京"


def test_a_record_cut_inside_a_character_or_not_all_on_disk_counts_for_nothing(tmp_path: Path) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a", note="ok")])
    journal = root / JOURNAL_FILE
    good = journal.read_bytes()
    cp.apply([se("b", note="東京")])
    whole = journal.read_bytes()
    cut = whole.index("東".encode()) + 1  # inside the character
    journal.write_bytes(whole[:cut])
    assert Store(root).version() == 1 and [r.name for r in Store(root).load().resources] == ["a"]
    # A record whose end line reached the disk but not all its text: its digest says so.
    broken = bytearray(whole)
    at = whole.index(b'"b"', len(good))
    broken[at + 1] = ord("x")
    journal.write_bytes(bytes(broken))
    assert [r.name for r in Store(root).load().resources] == ["a"]
    cp = resident(root)
    assert cp.apply([se("c")]).version == 2  # appended after the last good record
    assert [r.name for r in Store(root).load().resources] == ["a", "c"]


def test_a_snapshot_written_while_a_reader_reads_gives_it_the_newer_version(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a")])
    cp.apply([se("b")])
    reader = Store(root)
    read_journal = reader._journal_text

    def then_a_command_rewrites_the_store() -> str | None:
        text = read_journal()
        Store(root).delete([("ServiceEntry", "default", "a")])  # version 3, as a snapshot; no journal
        return text

    monkeypatch.setattr(reader, "_journal_text", then_a_command_rewrites_the_store)
    snapshot = reader.load()
    assert snapshot.version == 3 and [r.name for r in snapshot.resources] == ["b"]


@pytest.mark.parametrize("fails", ["journal append", "snapshot write"])
def test_a_write_that_fails_leaves_nothing_believed_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            fails: str) -> None:
    import os

    root = tmp_path / "state"
    cp = resident(root)
    cp.apply([se("a")])

    def disk_full(*args: object) -> int:
        raise OSError(28, "No space left on device")

    if fails == "snapshot write":
        monkeypatch.setattr(store_module, "JOURNAL_MAX", 0)  # every apply writes the snapshot whole
    with monkeypatch.context() as m:
        m.setattr(*((store_module, "write_private_atomic") if fails == "snapshot write" else (os, "write")), disk_full)
        with pytest.raises(OSError):
            cp.apply([se("b")])
    result = cp.apply([se("b")])
    assert result.changes[0][1] == "created" and result.version == 2  # not "unchanged"
    assert [r.name for r in Store(root).load().resources] == ["a", "b"]
    assert [r.name for r in cp.load().resources] == ["a", "b"]


def test_a_resident_store_keeps_one_copy_of_a_string_its_documents_repeat(tmp_path: Path) -> None:
    # The snapshot (written by a command) and the journal (by the control plane) alike.
    root = tmp_path / "state"
    Store(root).apply([se("a", host="api.example.com"), se("b", host="api.example.com")])
    cp = resident(root)
    cp.apply([se("c", host="api.example.com")])
    a, b, c = sorted(cp.load().resources, key=lambda r: r.name)
    assert a.spec.hosts[0] is b.spec.hosts[0] is c.spec.hosts[0]
    assert a.spec.ports[0].name is c.spec.ports[0].name


def test_a_secrets_values_are_not_shared(tmp_path: Path) -> None:
    value = "hunter2-password"
    (secret,) = load_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: istio-system\n"
                          f"stringData:\n  password: {value}\n", "s.yaml").resources
    root = tmp_path / "state"
    Store(root).apply([secret])
    (loaded,) = resident(root).load().resources
    stored = loaded.spec.string_data["password"]
    assert stored == value
    # Not the interpreter's shared copy: interning an equal new string gives that string back.
    assert sys.intern("".join(list(value))) is not stored
