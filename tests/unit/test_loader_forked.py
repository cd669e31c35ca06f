"""A large text loaded on two cores (``cli.forked``) gives what loading it whole gives: the same
resources in the same order with the same lines, the same diagnostics, and a YAML error as
the whole text reports it; a child that fails is made up for, and a threaded process never
forks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest
import yaml

from exitgate.cli import forked
from exitgate.api.loader import LoadResult, load_sources, load_text


def _service(i: int) -> list[dict[str, Any]]:
    host = f"svc-{i}.example.com"
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": f"se-{i}"},
         "spec": {"hosts": [host], "resolution": "DNS", "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": f"dr-{i}"},
         "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}},
    ]


def _text(n: int, broken: dict[int, dict[str, Any]] | None = None) -> str:
    docs = [d for i in range(n) for d in _service(i)]
    for at, doc in (broken or {}).items():
        docs[at] = doc
    return yaml.safe_dump_all(docs)


# Mistakes of three kinds, in both halves: an unknown field, a bad host, a namespace warning.
MISTAKES = {
    3: {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "bad-a"},
        "spec": {"hosts": ["a.example.com"], "no_such_field": 1}},
    150: {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "bad-b"},
          "spec": {"host": "bad..host"}},
    170: {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "namespace": "x"}},
}


@pytest.fixture(autouse=True)
def small_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked, "MIN_SPLIT", 1000)


# A fork is made only by a process of one thread; the suite's process has others by now (gRPC,
# earlier tests' helpers), so the cases that fork run in a new pytest process of their own.
FORK_CASES_ENV = "EXITGATE_FORK_CASES"
FORK_CASE = pytest.mark.skipif(os.environ.get(FORK_CASES_ENV) != "1", reason="run by test_the_forking_cases_in_a_process_of_their_own")


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The children forked during the test."""
    started: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            started.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return started


@pytest.mark.skipif(os.environ.get(FORK_CASES_ENV) == "1", reason="the cases' own process")
def test_the_forking_cases_in_a_process_of_their_own() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "fork_case"],
                         env={**os.environ, FORK_CASES_ENV: "1"}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 passed" in out.stdout, out.stdout


def _summary(result: LoadResult) -> tuple[list[Any], list[str]]:
    return ([(r.key, r.source, r.spec, dict(r.raw)) for r in result.resources],
            [f"{d} {d.line} {d.field}" for d in result.diagnostics])


def _both(text: str) -> tuple[LoadResult, LoadResult]:
    whole = load_text(text, "all.yaml")
    two = load_sources([("all.yaml", text)], split=forked.load_in_two)
    return whole, two


@FORK_CASE
def test_fork_case_a_large_text_loads_on_two_cores_as_it_loads_whole(forks: list[int]) -> None:
    text = _text(100, MISTAKES)
    at = forked.split_point(text)
    assert at is not None and 0.4 < at / len(text) < 0.6 and text[at:].startswith("---")
    whole, two = _both(text)
    assert _summary(two) == _summary(whole)
    assert len(whole.resources) == 198 and len(whole.diagnostics) == 3  # the warning refuses nothing
    assert len(forks) == 1
    # The second half's lines are the file's, not its part's.
    assert max(d.line or 0 for d in two.diagnostics) > text.count("\n", 0, at)


@FORK_CASE
def test_fork_case_a_yaml_error_in_either_half_is_the_whole_texts_error(forks: list[int]) -> None:
    for half in ("first", "second"):
        text = _text(100)
        lines = text.split("\n")
        at = len(lines) // 4 if half == "first" else 3 * len(lines) // 4
        lines.insert(at, "  hosts: [unclosed")
        broken = "\n".join(lines)
        whole, two = _both(broken)
        assert whole.unparsed and not two.resources
        assert _summary(two) == _summary(whole)
    assert len(forks) == 2


@FORK_CASE
def test_fork_case_a_failed_child_leaves_its_half_to_the_parent(monkeypatch: pytest.MonkeyPatch,
                                                               forks: list[int]) -> None:
    parent = os.getpid()
    real = load_text

    def failing_in_child(text: str, **kw: Any) -> LoadResult:
        if os.getpid() != parent:
            os._exit(3)
        return real(text, **kw)

    monkeypatch.setattr("exitgate.api.loader.load_text", failing_in_child)
    text = _text(100, MISTAKES)
    two = load_sources([("all.yaml", text)], split=forked.load_in_two)
    assert _summary(two) == _summary(real(text, "all.yaml"))
    assert len(forks) == 1


def test_no_cut_for_small_texts_directives_or_a_threaded_process(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _text(100)
    assert forked.split_point(text) is not None
    assert forked.split_point("%YAML 1.2\n" + text) is None
    monkeypatch.setattr(forked, "MIN_SPLIT", len(text) + 1)
    assert forked.split_point(text) is None
    monkeypatch.setattr(forked, "MIN_SPLIT", 1000)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not forked.can_fork()
        assert forked.load_in_two(text, lambda t: load_text(t, "all.yaml")) is None
    finally:
        stop.set()
        other.join()


@FORK_CASE
def test_fork_case_an_error_just_before_the_cut_is_the_whole_texts_error(forks: list[int]) -> None:
    text = _text(100)
    at = forked.split_point(text)
    assert at is not None
    broken = text[:at] + "extra: [1, 2\n" + text[at:]
    assert forked.split_point(broken) == at + len("extra: [1, 2\n")
    whole, two = _both(broken)
    assert whole.unparsed and "document start" in str(whole.diagnostics[0])
    assert _summary(two) == _summary(whole)
    assert len(forks) == 1


@FORK_CASE
def test_fork_case_an_interrupted_parent_stops_its_child(monkeypatch: pytest.MonkeyPatch, forks: list[int]) -> None:
    parent = os.getpid()
    real = load_text

    def interrupted_in_parent(text: str, **kw: Any) -> LoadResult:
        if os.getpid() == parent:
            raise KeyboardInterrupt
        return real(text, **kw)

    monkeypatch.setattr("exitgate.api.loader.load_text", interrupted_in_parent)
    with pytest.raises(KeyboardInterrupt):
        load_sources([("all.yaml", _text(100))], split=forked.load_in_two)
    assert len(forks) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(forks[0], 0)  # killed and reaped, not left running or a zombie
