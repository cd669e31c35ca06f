"""`exitgate apply` handed to a running control plane (``handoff``): the answer is the one the
command gives by itself, the store is written before the answer, a socket nobody listens on
means "apply it yourself", and the command's own entry answers it without importing the
loader. The control plane's end is a real ``HandoffServer`` on a real Unix socket, answering
with the control plane's handler over a resident Store."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitgate import handoff
from exitgate.cli.applying import answer_request
from exitgate.handoff import SOCKET_FILE, HandoffServer, apply_request
from exitgate.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tls-origination"
SRC = Path(__file__).resolve().parents[2] / "src"


def sources(*paths: Path) -> list[tuple[str, str]]:
    return [(str(p), p.read_text()) for p in paths]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    """A state directory with a control plane's end listening, over a resident Store."""
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    store = Store(root, keep_documents=False, resident=True)
    store.load()
    server = HandoffServer(root, lambda m: answer_request(store, m, threading.Lock()))
    server.start()
    try:
        yield root, store
    finally:
        server.stop()


def test_the_answer_is_what_the_command_gives_by_itself(served: tuple[Path, Store], tmp_path: Path) -> None:
    root, _ = served
    files = sorted(EXAMPLES.glob("*.yaml"))
    answer = handoff.request(root, apply_request(sources(*files), "default"))
    alone = answer_request(Store(tmp_path / "alone"), apply_request(sources(*files), "default"))
    assert answer is not None and answer == alone
    assert answer["ok"] and "serviceentry.networking.istio.io/cnn created" in answer["out"]
    # Written before the answer: any other command reads it from the store file.
    assert Store(root).load().get("ServiceEntry", "default", "cnn") is not None


def test_a_refused_batch_changes_nothing_and_says_where(served: tuple[Path, Store], tmp_path: Path) -> None:
    root, _ = served
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: bad}\n"
                   "spec: {hosts: [a.com], ports: [{number: 80, name: http, protocol: HTTPX}]}\n")
    answer = handoff.request(root, apply_request(sources(bad), "default"))
    assert answer is not None and not answer["ok"]
    [(is_error, text)] = answer["diagnostics"]
    assert is_error and text.startswith(f"{bad}:4:") and "spec.ports[0].protocol" in text
    assert not (root / "config.yaml").exists()


def test_the_resident_store_knows_the_version_it_wrote_as_a_fresh_load_reads_it(
        served: tuple[Path, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    root, store = served
    files = sorted(EXAMPLES.glob("*.yaml"))
    handoff.request(root, apply_request(sources(files[0]), "default"))
    handoff.request(root, apply_request(sources(*files), "default"))

    def unread() -> None:
        raise AssertionError("the store file was read again")

    with monkeypatch.context() as m:
        m.setattr(store, "_read", unread)
        known = store.load()
    fresh = Store(root, keep_documents=False).load()
    assert known.version == fresh.version == 2
    assert known.resources == fresh.resources  # kind, names, spec, and each one's file and line
    assert [r.source for r in known.resources] == [r.source for r in fresh.resources]
    assert [r.raw for r in known.resources] == [r.raw for r in fresh.resources]
    # A write by anyone else is read: the stamp of the file differs.
    Store(root).delete([("ServiceEntry", "default", "cnn")])
    assert store.load().get("ServiceEntry", "default", "cnn") is None


def test_nobody_listening_means_apply_it_yourself(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir()
    assert handoff.request(root, apply_request([], "default")) is None  # no socket file
    # The file a killed control plane leaves behind refuses connections.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(root / SOCKET_FILE))
    assert handoff.request(root, apply_request([], "default")) is None


def test_a_deep_state_directory_is_reached_through_its_descriptor(tmp_path: Path) -> None:
    root = tmp_path / ("d" * 60) / ("e" * 60) / "state"
    root.mkdir(parents=True)
    assert len(str(root / SOCKET_FILE)) > 107  # too long for a Unix socket's address
    server = HandoffServer(root, lambda m: {"ok": True, "out": [m["verb"]]})
    server.start()
    try:
        assert handoff.request(root, {"verb": "ping"}) == {"ok": True, "out": ["ping"]}
        assert (root / SOCKET_FILE).stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()
    assert not (root / SOCKET_FILE).exists()


def test_a_handler_that_fails_is_an_answer_not_a_silence(tmp_path: Path) -> None:
    def broken(message: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("disk full")

    server = HandoffServer(tmp_path, broken)
    server.start()
    try:
        answer = handoff.request(tmp_path, {"verb": "apply"})
    finally:
        server.stop()
    assert answer == {"ok": False, "diagnostics": [[True, "error while applying: disk full"]]}


def test_print_answer_is_kubectls_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = handoff.print_answer({"ok": True, "diagnostics": [[False, "f.yaml:3: Warning x"]],
                                 "out": ["secret/a created"], "notes": ["a note"]})
    out, err = capsys.readouterr()
    assert code == 0 and out == "secret/a created\n" and err == "f.yaml:3: Warning x\na note\n"
    assert handoff.print_answer({"ok": False, "diagnostics": [[True, "f.yaml:1: Error y"]]}) == 1
    assert capsys.readouterr().err == "f.yaml:1: Error y\nerror: nothing was applied\n"


def _entry(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command's own entry point, as the installed `exitgate` runs it; it reports whether
    the loader (pydantic) was imported."""
    code = ("import sys; from exitgate.cli import fast; rc = fast.apply_handed_off(sys.argv[1:]); "
            "print(json.dumps([rc, 'pydantic' in sys.modules]), file=sys.stderr)")
    env = {**os.environ, "EXITGATE_HOME": str(root), "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", "import json; " + code, *argv], capture_output=True, text=True,
                          timeout=60, env=env)


def test_the_entry_point_answers_an_apply_without_the_loader(served: tuple[Path, Store]) -> None:
    root, _ = served
    proc = _entry(root, "apply", "-f", str(EXAMPLES))
    *said, last = proc.stderr.splitlines()
    assert json.loads(last) == [0, False], proc.stderr
    assert "serviceentry.networking.istio.io/cnn created" in proc.stdout.splitlines()
    # Anything but the plain options goes to the whole command.
    proc = _entry(root, "apply", "-f", str(EXAMPLES), "--dry-run")
    assert json.loads(proc.stderr.splitlines()[-1]) == [None, False]
    proc = _entry(root, "apply", "-f", "-")
    assert json.loads(proc.stderr.splitlines()[-1]) == [None, False]


def test_the_entry_point_leaves_it_to_the_command_when_nothing_runs(tmp_path: Path) -> None:
    proc = _entry(tmp_path, "apply", "-f", str(EXAMPLES))
    assert json.loads(proc.stderr.splitlines()[-1]) == [None, False]


def test_a_resident_store_says_what_its_write_changed(served: tuple[Path, Store]) -> None:
    root, store = served
    files = sorted(EXAMPLES.glob("*.yaml"))
    handoff.request(root, apply_request(sources(*files), "default"))
    first = store.load()
    assert first.delta is not None and first.delta.base == 0
    assert {(r.kind, what) for r, what in first.delta.changes} >= {("ServiceEntry", "created"), ("Gateway", "created")}
    handoff.request(root, apply_request(sources(*files), "default"))  # all unchanged: no new version
    assert store.load() is first
    store.delete([("ServiceEntry", "default", "cnn")])
    gone = store.load()
    assert gone.delta is not None and gone.delta.base == 1 and gone.delta.deleted == (("ServiceEntry", "default", "cnn"),)
    # A version another process wrote is read, and nobody says what it changed.
    Store(root).delete([("Gateway", "default", "istio-egressgateway")])
    assert store.load().delta is None


def test_a_large_batch_is_applied_by_the_command_not_handed_over(tmp_path: Path) -> None:
    seen: list[object] = []
    root = tmp_path / "state"
    root.mkdir()
    server = HandoffServer(root, lambda m: seen.append(m) or {"ok": True, "out": []})
    server.start()
    try:
        small = [("a.yaml", "x" * 100)]
        assert handoff.apply(root, small, "default") == {"ok": True, "out": []}
        big = [("a.yaml", "x" * (handoff.HANDOFF_MAX_BYTES // 2)), ("b.yaml", "y" * (handoff.HANDOFF_MAX_BYTES // 2 + 1))]
        assert handoff.apply(root, big, "default") is None  # parsed by the command itself
    finally:
        server.stop()
    assert len(seen) == 1


def test_a_socket_this_user_may_not_reach_leaves_it_to_the_command(tmp_path: Path) -> None:
    """Another user's state directory (0700): no traceback, the command goes on to the store,
    which says it may not be read."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to be another user")
    root = tmp_path / "state"
    root.mkdir(mode=0o700)
    server = HandoffServer(root, lambda m: {"ok": True})
    server.start()
    try:
        pid = os.fork()
        if pid == 0:  # the child becomes another user and asks
            try:
                os.setuid(65534)
                os._exit(0 if handoff.request(root, {"verb": "ping"}) is None else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
    finally:
        server.stop()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_peer_of_another_user_is_refused_even_where_the_files_let_it_in() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to be another user")
    # A directory of its own right under /tmp (sticky, open to all): no parent to loosen.
    top = Path(tempfile.mkdtemp(prefix="eg-peer-"))
    root = top / "state"
    root.mkdir(mode=0o700)
    asked: list[object] = []
    server = HandoffServer(root, lambda m: asked.append(m) or {"ok": True})
    server.start()
    read_fd, write_fd = os.pipe()
    try:
        # Permissions loosened by mistake: the socket's peer check still holds.
        os.chmod(top, 0o711)
        os.chmod(root, 0o755)
        os.chmod(root / SOCKET_FILE, 0o666)
        pid = os.fork()
        if pid == 0:
            try:
                os.setuid(65534)
                answer = handoff.request(root, {"verb": "apply", "sources": []})
                os.write(write_fd, json.dumps(answer).encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        os.close(write_fd)
        answer = json.loads(os.read(read_fd, 65536) or b"null")
    finally:
        os.close(read_fd)
        server.stop()
        shutil.rmtree(top)
    assert asked == []
    assert answer is not None and not answer["ok"] and "refused: user 65534" in answer["diagnostics"][0][1]


def test_the_entry_point_leaves_a_pipe_to_the_command_which_reads_it_once(served: tuple[Path, Store],
                                                                          tmp_path: Path) -> None:
    root, _ = served
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Nothing writes the pipe: had the entry point opened it, it would block, then time out.
    proc = _entry(root, "apply", "-f", str(fifo))
    assert json.loads(proc.stderr.splitlines()[-1]) == [None, False]


def test_a_control_plane_that_never_answers_is_an_error_not_a_hang(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "state"
    root.mkdir()
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(str(root / SOCKET_FILE))
    stuck.listen(4)  # takes connections into its backlog, never accepts them (a stopped `up`)
    monkeypatch.setattr(handoff, "REPLY_TIMEOUT_S", 0.5)
    try:
        with pytest.raises(handoff.HandoffError, match="may or may not be stored"):
            handoff.request(root, {"verb": "ping"})
    finally:
        stuck.close()


def test_one_bad_answer_does_not_end_the_serving(tmp_path: Path) -> None:
    answers: list[dict[str, object]] = [{"ok": True, "bad": object()}, {"ok": True}]
    server = HandoffServer(tmp_path, lambda m: answers.pop(0))
    server.start()
    try:
        with pytest.raises(handoff.HandoffError):
            handoff.request(tmp_path, {"verb": "ping"})  # the answer cannot be written: no answer
        assert handoff.request(tmp_path, {"verb": "ping"}) == {"ok": True}
        assert handoff.request(tmp_path, ["not", "an", "object"]) == {  # type: ignore[arg-type]
            "ok": False, "diagnostics": [[True, "not a request: not a JSON object"]]}
    finally:
        server.stop()
