"""A large YAML text parsed on two cores (the command's way of loading, ``load_sources(split=
load_in_two)``; the pure ``api`` layer forks nothing): ``exitgate apply`` of 30,000 documents spends seconds
in parsing and Istio's rules, one core's work while the machine's other core waits (the
control plane is idle until the store changes). The text is cut at the document boundary
nearest its middle; a forked child loads the second run of documents while this process
loads the first, and hands back its resources and diagnostics pickled. The result is the
one ``load_text`` gives for the whole text: the same resources in the same order, the same
diagnostics with the same lines (the child's text starts with as many empty lines as come
before its part); text that is not valid YAML is loaded again whole, for the error a
whole-text load gives.

Only where it is safe and worth it: a process with one thread (a fork copies no other), a
platform with ``fork``, a text of at least ``MIN_SPLIT`` characters, and no YAML directive
(``%YAML``, ``%TAG``) that a cut could separate from its document. If the child fails in any
way, this process loads its part itself."""

from __future__ import annotations

import os
import pickle
import re
import signal
import threading
from collections.abc import Callable

from exitgate.api.loader import LoadResult

# Below this, a fork and the pickled hand-back cost more than the second core gives
# (about 3,000 documents of Istio's task; bench/RESULTS.md, issue 9's eighth stop).
MIN_SPLIT = 1 << 20

# A document start at a line's beginning (YAML forbids one inside a document's content).
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)


def split_point(text: str) -> int | None:
    """The offset of the document start nearest the middle of ``text`` (not its first line),
    or None when the text should not be cut."""
    if len(text) < MIN_SPLIT or _DIRECTIVE.search(text):
        return None
    middle = len(text) // 2
    after = _DOCUMENT_START.search(text, middle)
    before = None
    for m in _DOCUMENT_START.finditer(text, max(0, middle - 65536), middle):
        before = m
    candidates = [m.start() for m in (before, after) if m is not None and m.start() > 0]
    if not candidates:
        return None
    return min(candidates, key=lambda at: abs(at - middle))


def can_fork() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1


def load_in_two(text: str, load: Callable[[str], LoadResult]) -> LoadResult | None:
    """``load`` (the loader of one text) over both parts of ``text``, the second in a child
    process; None when the text is not cut (the caller loads it whole)."""
    at = split_point(text)
    if at is None or not can_fork():
        return None
    # The second part keeps its line numbers: as many newlines as precede it, then it.
    second = "\n" * text.count("\n", 0, at) + text[at:]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, write the result, leave without running any cleanup
        status = 1
        try:
            os.close(read_fd)
            loaded = load(second)
            # The node tree beside each document is for finding lines, which the child did.
            loaded.resources = [r.with_raw(dict(r.raw)) for r in loaded.resources]
            blob = pickle.dumps(loaded, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as out:
                out.write(blob)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    pipe = os.fdopen(read_fd, "rb")
    done = False
    try:
        first = load(text[:at])
        blob = pipe.read()
        done = True
    finally:
        pipe.close()
        if not done:  # interrupted (Ctrl-C, an error): the child's work is not wanted
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    rest: LoadResult | None = None
    if status == 0 and blob:
        try:
            rest = pickle.loads(blob)
        except Exception:  # a child that died half-way through writing: load the part here
            rest = None
        if not isinstance(rest, LoadResult):
            rest = None
    if rest is None:
        rest = load(second)
    return _joined(first, rest, text, load)


def _joined(first: LoadResult, rest: LoadResult, text: str, load: Callable[[str], LoadResult]) -> LoadResult:
    """Both parts as one text's result. Text that is not valid YAML is loaded again whole, so
    that its error is the one a whole-text load reports (an unclosed bracket just before the
    cut is "got document start" there, "got stream end" in the part alone)."""
    if first.unparsed or rest.unparsed:
        return load(text)
    return LoadResult(first.resources + rest.resources, first.diagnostics + rest.diagnostics)
