"""The store: kubectl-like apply results, a version that moves only on change, private files,
all-or-nothing batches, restarts and concurrent writers."""

from __future__ import annotations

import json

import stat
import threading
from pathlib import Path

import pytest
import orjson
import yaml

from exitgate.api import diagnostics as dx
from exitgate.api.loader import load_paths, load_text
from exitgate.api.resources import Resource
from exitgate.store import SNAPSHOT_FILE, ChangeResult, Store, _dump

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tls-origination"


def se(name: str = "cnn", host: str = "edition.cnn.com", port: int = 443, namespace: str | None = None) -> Resource:
    ns = f"  namespace: {namespace}\n" if namespace else ""
    text = (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
        f"  name: {name}\n{ns}spec:\n  hosts:\n  - {host}\n  ports:\n"
        f"  - number: {port}\n    name: tls\n    protocol: TLS\n  resolution: DNS\n"
    )
    result = load_text(text, f"{name}.yaml")
    assert result.diagnostics == []
    (r,) = result.resources
    return r


def examples() -> list[Resource]:
    result = load_paths([EXAMPLES])
    assert result.ok
    return result.resources


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


def outcome(result: ChangeResult) -> list[tuple[str, str]]:
    return [(r.name, what) for r, what in result.changes]


def test_empty_store(store: Store) -> None:
    assert store.version() == 0
    snap = store.load()
    assert (snap.version, snap.resources) == (0, ())
    assert not store.path.exists()


def test_apply_creates_then_unchanged_then_configured(store: Store) -> None:
    first = store.apply([se()])
    assert first.ok and first.diagnostics == ()
    assert outcome(first) == [("cnn", "created")]
    assert store.version() == 1

    again = store.apply([se()])
    assert outcome(again) == [("cnn", "unchanged")]
    assert store.version() == 1

    changed = store.apply([se(port=8443)])
    assert outcome(changed) == [("cnn", "configured")]
    assert store.version() == 2
    stored = store.load().get("ServiceEntry", "default", "cnn")
    assert stored is not None and stored.raw["spec"]["ports"][0]["number"] == 8443


def test_version_moves_once_per_changing_batch_and_never_for_an_unchanged_one(store: Store) -> None:
    assert outcome(store.apply(examples())) == [(r.name, "created") for r in examples()]
    assert store.version() == 1
    before = store.path.read_bytes()
    assert {w for _, w in store.apply(examples()).changes} == {"unchanged"}
    assert store.version() == 1
    assert store.path.read_bytes() == before  # not even rewritten
    # One new and the rest unchanged: one version step for the whole batch.
    mixed = store.apply(examples() + [se("extra", "extra.example.com")])
    assert sorted({w for _, w in mixed.changes}) == ["created", "unchanged"]
    assert store.version() == 2
    assert mixed.snapshot is not None and mixed.snapshot.version == 2


def test_apply_returns_the_new_snapshot(store: Store) -> None:
    result = store.apply([se("a", "a.example.com"), se("b", "b.example.com")])
    assert result.snapshot is not None
    assert result.snapshot.version == 1
    assert [r.name for r in result.snapshot.of_kind("ServiceEntry")] == ["a", "b"]
    assert result.snapshot == store.load()


def test_same_name_in_another_namespace_is_another_resource(store: Store) -> None:
    store.apply([se()])
    result = store.apply([se(namespace="egress")])
    assert outcome(result) == [("cnn", "created")]
    assert {r.key for r in store.load().resources} == {
        ("ServiceEntry", "default", "cnn"), ("ServiceEntry", "egress", "cnn")}


def test_snapshot_file_is_0600_and_directory_0700(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    store = Store(state)
    store.apply([se()])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / SNAPSHOT_FILE).stat().st_mode) == 0o600
    # Replacing the file keeps it private, and no temporary file is left behind.
    store.apply([se(port=8443)])
    assert stat.S_IMODE((state / SNAPSHOT_FILE).stat().st_mode) == 0o600
    assert not [p.name for p in state.iterdir() if p.name.endswith(".tmp")]
    for p in state.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


def test_snapshot_file_starts_with_its_version(store: Store) -> None:
    store.apply([se()])
    store.apply([se(port=8443)])
    assert store.path.read_text().splitlines()[0] == "# version: 2"


def test_delete(store: Store) -> None:
    store.apply([se("a", "a.example.com"), se("b", "b.example.com")])
    result = store.delete([("ServiceEntry", "default", "a")])
    assert result.ok
    assert outcome(result) == [("a", "deleted")]
    assert store.version() == 2
    assert [r.name for r in store.load().resources] == ["b"]


def test_delete_of_a_missing_resource_warns_and_changes_nothing(store: Store) -> None:
    store.apply([se()])
    before = store.path.read_bytes()
    result = store.delete([("ServiceEntry", "default", "nope")])
    assert result.changes == ()
    assert [(d.code, d.severity, d.resource) for d in result.diagnostics] == [
        (dx.NOT_FOUND, dx.Severity.WARNING, "ServiceEntry default/nope")]
    assert store.version() == 1
    assert store.path.read_bytes() == before


def test_delete_some_found_some_not(store: Store) -> None:
    store.apply([se()])
    result = store.delete([("ServiceEntry", "default", "cnn"), ("Gateway", "default", "cnn")])
    assert outcome(result) == [("cnn", "deleted")]
    assert [d.resource for d in result.diagnostics] == ["Gateway default/cnn"]
    assert store.load().resources == ()
    assert store.version() == 2


def test_state_survives_a_new_store_instance(tmp_path: Path) -> None:
    Store(tmp_path / "s").apply(examples())
    restarted = Store(tmp_path / "s")
    snap = restarted.load()
    assert snap.version == 1
    assert sorted(r.key for r in snap.resources) == sorted(r.key for r in examples())
    # Same typed specs and plain data as what was applied.
    for r in examples():
        got = snap.get(*r.key)
        assert got is not None
        assert got.spec == r.spec
        assert got.raw == r.raw
    assert {w for _, w in restarted.apply(examples()).changes} == {"unchanged"}
    assert outcome(restarted.apply([se(port=8443)])) == [("cnn", "configured")]
    assert Store(tmp_path / "s").version() == 2


def test_values_the_loader_keeps_typed_survive_the_round_trip(store: Store) -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: cnn\n"
        "  annotations:\n    note: |\n      two\n      lines\n    yes: 'yes'\n    hex: '0x50'\n"
        "  creationTimestamp: 2024-01-01T00:00:00Z\n"
        "spec:\n  hosts: [edition.cnn.com]\n  ports:\n  - {number: 0x1bb, name: tls, protocol: TLS}\n"
        "  resolution: DNS\n"
    )
    (r,) = load_text(text, "x.yaml").resources
    assert outcome(store.apply([r])) == [("cnn", "created")]
    got = store.load().get("ServiceEntry", "default", "cnn")
    assert got is not None
    assert got.raw["metadata"]["annotations"] == {"note": "two\nlines\n", "yes": "yes", "hex": "0x50"}
    assert got.raw["spec"]["ports"][0]["number"] == 443
    (again,) = load_text(text, "x.yaml").resources
    assert outcome(store.apply([again])) == [("cnn", "unchanged")]


def test_batch_with_a_duplicate_changes_nothing(store: Store) -> None:
    store.apply([se()])
    before = store.path.read_bytes()
    result = store.apply([se("new", "new.example.com"), se(port=1), se(port=2)])
    assert not result.ok
    assert result.changes == ()
    assert result.snapshot is None
    assert {d.code for d in result.diagnostics} == {dx.DUPLICATE}
    assert {d.resource for d in result.diagnostics} == {"ServiceEntry default/cnn"}
    assert len(result.diagnostics) == 2
    assert all(d.file == "cnn.yaml" and d.line == 1 for d in result.diagnostics)
    assert store.path.read_bytes() == before
    assert store.version() == 1
    assert store.load().get("ServiceEntry", "default", "new") is None


def test_duplicate_across_api_versions_is_still_a_duplicate(store: Store) -> None:
    v1 = se()
    text = Path(EXAMPLES / "01-serviceentry.yaml").read_text()
    (alpha,) = load_text(text, "01.yaml").resources
    assert alpha.api_version != v1.api_version and alpha.key == v1.key
    result = store.apply([v1, alpha])
    assert not result.ok
    assert not store.path.exists()


def test_concurrent_applies_from_two_threads_both_land(tmp_path: Path) -> None:
    n = 8
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(prefix: str) -> None:
        try:
            store = Store(tmp_path / "state")  # each thread its own instance, as two processes would
            start.wait()
            for i in range(n):
                result = store.apply([se(f"{prefix}{i}", f"{prefix}{i}.example.com")])
                assert outcome(result) == [(f"{prefix}{i}", "created")]
        except BaseException as e:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    snap = Store(tmp_path / "state").load()
    assert sorted(r.name for r in snap.resources) == sorted(f"{p}{i}" for p in "ab" for i in range(n))
    # Every apply took its own version step: none was lost to a race.
    assert snap.version == 2 * n


def test_tampered_snapshot_is_refused_loudly(store: Store) -> None:
    store.apply([se()])
    text = store.path.read_text()
    assert '"protocol": "TLS"' in text
    store.path.write_text(text.replace('"protocol": "TLS"', '"protocol": "NOPE"'))
    with pytest.raises(RuntimeError, match="stored configuration is invalid"):
        store.load()


def test_documents_are_stored_as_json_and_yaml_ones_still_load(store: Store) -> None:
    store.apply([se("a", "a.example.com")])
    text = store.path.read_text()
    lines = text.splitlines()
    assert lines[2] == "--- # ServiceEntry default/a" and lines[3] == "{" and lines[4] == '  "apiVersion": "networking.istio.io/v1",'
    doc = text.split("--- # ServiceEntry default/a\n", 1)[1]
    assert json.loads(doc)["spec"]["hosts"] == ["a.example.com"]
    [a] = store.load().resources
    assert a.source is not None and a.source.line == 4 and a.spec.hosts == ["a.example.com"]
    [b] = store.load(field_lines=True).resources
    assert b.source is not None and b.source.line == 4 and b == a
    # A store an earlier exitgate wrote with YAML documents: read as is; the same resource applied
    # again is unchanged (compared by content), and a change rewrites it as JSON.
    store.path.write_text("# version: 2\n# written by exitgate\n--- # ServiceEntry default/a\n"
                          + yaml.safe_dump(json.loads(doc)))
    assert store.load().resources[0].spec.hosts == ["a.example.com"]
    assert outcome(store.apply([se("a", "a.example.com")])) == [("a", "unchanged")]
    assert outcome(store.apply([se("a", "a2.example.com")])) == [("a", "configured")]
    assert store.path.read_text().splitlines()[3].startswith("{")


def test_a_reload_parses_only_what_changed(store: Store) -> None:
    store.apply([se("a", "a.example.com"), se("b", "b.example.com")])
    first = store.load()
    store.apply([se("b", "b.example.com", port=8443), se("c", "c.example.com")])
    second = store.load()
    a1, a2 = first.get("ServiceEntry", "default", "a"), second.get("ServiceEntry", "default", "a")
    assert a1 is not None and a2 is not None
    assert a2.spec is a1.spec  # the same parsed document, not parsed again
    b2 = second.get("ServiceEntry", "default", "b")
    assert b2 is not None and b2.raw["spec"]["ports"][0]["number"] == 8443
    # Each resource's line is where its document is now (after "--- # KIND NS/NAME").
    lines = store.path.read_text().splitlines()
    for r in second.resources:
        assert r.source is not None
        assert lines[r.source.line - 2] == f"--- # ServiceEntry default/{r.name}"


def test_a_store_written_before_the_markers_is_read_and_rewritten(store: Store) -> None:
    store.state_dir.mkdir(parents=True, exist_ok=True)
    store.path.write_text("# version: 4\n# written by exitgate; edit with `exitgate apply` / `delete`\n"
                          "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: old\n"
                          "  namespace: default\nspec:\n  hosts: [old.example.com]\n  resolution: DNS\n"
                          "  ports: [{number: 80, name: http, protocol: HTTP}]\n")
    assert [r.name for r in store.load().resources] == ["old"]
    assert outcome(store.apply([se("a", "a.example.com")])) == [("a", "created")]
    assert store.version() == 5
    assert [r.name for r in store.load().resources] == ["a", "old"]
    assert "--- # ServiceEntry default/old" in store.path.read_text()


def test_a_checked_document_loads_as_the_full_path_loads_it() -> None:
    """The store's fast path (no rules run again) gives the same resources as the full one,
    for every document of the examples, Secrets included."""
    from pathlib import Path

    from exitgate.api.loader import load_document, load_paths

    loaded = load_paths([Path(__file__).resolve().parents[2] / "examples"])
    assert len(loaded.resources) > 30
    for r in loaded.resources:
        doc = orjson.loads(_dump(r.raw))
        fast, diags = load_document(doc, "store", default_namespace=r.namespace, checked=True)
        assert fast is not None and diags == [], r.ref
        assert (fast.kind, fast.namespace, fast.name, fast.api_version) == (r.kind, r.namespace, r.name, r.api_version)
        assert fast.spec == r.spec and fast.raw == orjson.loads(_dump(r.raw)), r.ref
    # A document that does not pass is not let through by the fast path: it says why.
    bad, diags = load_document({"apiVersion": "v1", "kind": "Nope", "metadata": {"name": "x"}}, "store", checked=True)
    assert bad is None and diags


def test_the_control_planes_store_keeps_metadata_not_whole_istio_documents(tmp_path: Path) -> None:


    docs = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se, annotations: {a: b}}\n"
            "spec: {hosts: [x.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}\n"
            "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: p}}\nspec: {containers: [{name: c}]}\n")
    Store(tmp_path).apply(load_text(docs, "x.yaml").resources)
    full = {r.kind: r for r in Store(tmp_path).load().resources}
    slim = {r.kind: r for r in Store(tmp_path, keep_documents=False).load().resources}
    assert "spec" in full["ServiceEntry"].raw and "spec" not in slim["ServiceEntry"].raw
    assert slim["ServiceEntry"].raw["metadata"]["annotations"] == {"a": "b"}
    assert slim["ServiceEntry"].spec == full["ServiceEntry"].spec
    assert slim["Pod"].raw == full["Pod"].raw  # the inventory reads Kubernetes objects whole
    # Alike field sets are shared; a copy with an update gets its own, and the others stay.
    a, b = (Store(tmp_path, keep_documents=False).load().resources for _ in range(2))
    se = next(r for r in a if r.kind == "ServiceEntry").spec
    port = se.ports[0]
    copied = port.model_copy(update={"target_port": 8080})
    assert copied.model_fields_set == {"number", "name", "protocol", "target_port"}
    assert port.model_fields_set == {"number", "name", "protocol"} and port == full["ServiceEntry"].spec.ports[0]
