"""The loader's direct document builder gives what PyYAML's constructor gives: on every YAML file
of the repository and on the cases where the two paths differ (numbers, tags, merges, aliases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exitgate.api.fastyaml import DuplicateKey, FastLoader

ROOT = Path(__file__).resolve().parents[2]

TRICKY = """
ints: [0, 7, 010, 0x1F, 0o17, 1_000, +5, -3, 190:20:30]
floats: [1.5, -0.0, .inf, -.Inf, .nan, 1e3, 6.8523015e+5]
strings: [yes, no, on, off, y, "80", '007', ~x, "true"]
bools: [true, True, TRUE, false, False, FALSE]
nulls: [~, null, Null, NULL, ]
empty:
when: 2001-12-14t21:59:43.10-05:00
date: 2002-12-14
tagged: !!str 123
bin: !!binary aGVsbG8=
base: &base {a: 1, b: [x, y]}
merged: {<<: *base, c: 3}
alias: *base
seq_of_maps: [{k: v}, {k: w}]
"""


def both(text: str) -> list[tuple[Any, Any]]:
    fast, slow = FastLoader(text), FastLoader(text)
    out = []
    try:
        while fast.check_node():
            a = fast.get_node()
            slow.check_node()
            b = slow.get_node()
            out.append((fast.build(a), slow.construct_document(b)))
    finally:
        fast.dispose()
        slow.dispose()
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # nan
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_the_tricky_cases_build_alike() -> None:
    [(fast, slow)] = both(TRICKY)
    assert same(fast, slow), (fast, slow)
    assert fast["ints"][3] == 31 and fast["strings"][0] == "yes" and fast["merged"] == {"a": 1, "b": ["x", "y"], "c": 3}


def yaml_files() -> list[Path]:
    out = []
    for top in ("examples", "tests"):
        out += sorted((ROOT / top).rglob("*.yaml")) + sorted((ROOT / top).rglob("*.yml"))
    return out


def test_every_yaml_file_here_builds_alike() -> None:
    files = yaml_files()
    assert len(files) > 50
    checked = 0
    for f in files:
        try:
            pairs = both(f.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue  # a deliberately broken input: both paths refuse it (below)
        for fast, slow in pairs:
            assert same(fast, slow), f
            checked += 1
    assert checked > 200


@pytest.mark.parametrize("text", ["a: 1\na: 2\n", "m: {x: 1, x: 2}\n", "'80': a\n80: b\n"])
def test_duplicate_keys_are_refused(text: str) -> None:
    loader = FastLoader(text)
    try:
        with pytest.raises(DuplicateKey):
            loader.build(loader.get_single_node())
    finally:
        loader.dispose()
