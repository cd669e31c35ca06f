"""``exitgate apply`` handed to the running control plane of its state directory.

The CLI reads the files it is given and sends their text (up to ``HANDOFF_MAX_BYTES``); the
control plane (``exitgate up``), which has the loader imported and the store in memory, parses,
validates and stores them (a journal record), and answers with what the command prints. Done by
the command itself, ``apply`` reads and rewrites the whole store and the control plane then
reads it all again: at 10,000 services that was most of "one more service". The store's files
stay the one truth: the control plane writes them before it answers, and every other command
reads them as before.

The socket is a file of the state directory (mode 0600 in a 0700 directory: whoever may write
the store may apply), and the control plane also refuses a peer of another user (``SO_PEERCRED``). One request a
connection: the client sends a JSON object and shuts its side down; the server answers with one
JSON object and closes. A connection that cannot be made means no control plane runs here (a
socket file left by a killed one refuses), and the CLI applies to the store itself.

This module imports only the standard library: the CLI's apply starts with it alone.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

SOCKET_FILE = "control.sock"
# AF_UNIX paths are at most 107 bytes; a deeper state directory is reached through its open
# descriptor (/proc/self/fd/N/control.sock), which Linux resolves for bind and connect alike.
_MAX_PATH = 100
# A control plane that takes no connection within this is stopped or stuck (Ctrl-Z).
CONNECT_TIMEOUT_S = 2.0
# The most a batch of HANDOFF_MAX_BYTES takes to parse, validate and store here, many times over.
REPLY_TIMEOUT_S = 60.0
# A peer must send its whole request within this: one that trickles must not hold everyone's.
READ_TIMEOUT_S = 30.0

# The most text an apply hands over. The control plane's memory keeps what parsing a batch
# leaves scattered through its heap (about 57 MiB a MiB of YAML: the parse's garbage is freed,
# but the pages it shares with the resources kept are not); a larger batch is parsed by the
# command, which writes the store, and the control plane loads the validated documents (a
# quarter of the memory; bench/parse_memory.py). A change a user types is a few KiB.
HANDOFF_MAX_BYTES = 256 << 10
# A request larger than this is not one the CLI sends (HANDOFF_MAX_BYTES of text, JSON-escaped).
MAX_REQUEST_BYTES = 8 * HANDOFF_MAX_BYTES + (64 << 10)

Answer = dict[str, Any]
Handler = Callable[[dict[str, Any]], Answer]


def apply_request(sources: list[tuple[str, str]], namespace: str) -> dict[str, Any]:
    """What ``exitgate apply`` sends: each file's name and text, and ``-n``."""
    return {"verb": "apply", "namespace": namespace, "sources": sources}


def apply(root: Path, sources: list[tuple[str, str]], namespace: str) -> Answer | None:
    """The running control plane's answer to applying ``sources``; None when the command is to
    apply them itself: none runs for ``root``, or they are more than it takes."""
    if sum(len(text) for _, text in sources) > HANDOFF_MAX_BYTES:
        return None
    return request(root, apply_request(sources, namespace))


class HandoffError(RuntimeError):
    """A control plane runs here and did not answer: it takes no connection, or it took the
    request and gave no answer (the message says whether anything may have been applied)."""


def _address(root: Path) -> tuple[str, int | None]:
    path = str(root / SOCKET_FILE)
    if len(path.encode()) <= _MAX_PATH:
        return path, None
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{SOCKET_FILE}", fd


def _recv_all(conn: socket.socket, deadline: float | None = None, limit: int | None = None) -> bytes:
    """Everything until the peer's end, within ``deadline`` (monotonic) and ``limit`` bytes
    (TimeoutError, ValueError past them)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request took too long to arrive")
            conn.settimeout(left)
        chunk = conn.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise ValueError(f"a request of more than {limit} bytes")
        chunks.append(chunk)


def request(root: Path, message: dict[str, Any]) -> Answer | None:
    """The running control plane's answer to ``message``; None when none runs for ``root``
    (nothing was sent)."""
    try:
        if not (root / SOCKET_FILE).exists():
            return None
        address, fd = _address(root)
    except PermissionError:
        return None  # another user's state directory: applying to its store says so
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(CONNECT_TIMEOUT_S)
            try:
                s.connect(address)
            except (FileNotFoundError, ConnectionRefusedError):
                return None  # a socket file a killed control plane left behind
            except PermissionError:
                return None  # not this user's: applying to the store says so
            except OSError as e:  # its backlog full, the connection not taken in time
                raise HandoffError(f"the running control plane does not take connections ({e}); "
                                   "nothing was applied") from None
            try:
                s.settimeout(REPLY_TIMEOUT_S)
                s.sendall(json.dumps(message).encode())
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                # The server reads the whole request before it acts: a request it did not
                # take whole was not applied.
                raise HandoffError(f"the running control plane closed the connection ({e}); "
                                   "nothing was applied") from None
            try:
                reply = _recv_all(s)
            except OSError as e:
                raise HandoffError(f"no answer from the running control plane ({e or 'timed out'}); the "
                                   "apply may or may not be stored: see `exitgate get`") from None
    finally:
        if fd is not None:
            os.close(fd)
    if not reply:
        raise HandoffError("the running control plane closed the connection without answering; "
                           "see `exitgate get` for what the store holds")
    answer: Answer = json.loads(reply)
    return answer


def print_answer(answer: Answer, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print an apply's answer as the command does; its exit status. Diagnostics and notes go
    to standard error (red errors, yellow warnings, dim notes on a terminal), what changed to
    standard output, kubectl's way."""
    out = out or sys.stdout
    err = err or sys.stderr
    color = err.isatty()

    def say(text: str, style: str) -> None:
        err.write(f"\x1b[{style}m{text}\x1b[0m\n" if color else text + "\n")

    for is_error, text in answer.get("diagnostics", ()):
        say(text, "31" if is_error else "33")
    if not answer.get("ok"):
        say(f"error: {answer.get('error') or 'nothing was applied'}", "31")
        return 1
    for line in answer.get("out", ()):
        out.write(line + "\n")
    out.flush()
    for note in answer.get("notes", ()):
        say(note, "2")
    return 0


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class HandoffServer:
    """The control plane's end: one thread answering one connection at a time with
    ``handle(request)`` (applies are taken in turn, as the store's lock would take them)."""

    def __init__(self, root: Path, handle: Handler) -> None:
        self.root = root
        self.handle = handle
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        path = self.root / SOCKET_FILE
        # A file left by a control plane that was killed: one `up` a state directory (its lock
        # is held), so nothing else listens on it.
        path.unlink(missing_ok=True)
        address, fd = _address(self.root)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address)
        finally:
            if fd is not None:
                os.close(fd)
        os.chmod(path, 0o600)
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="exitgate-handoff", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                try:
                    self._answer(conn)
                except OSError:
                    pass  # the client went away, or took too long; what was applied is stored
                except Exception:  # noqa: BLE001 (one bad request must not end the serving)
                    pass

    def _answer(self, conn: socket.socket) -> None:
        # A peer that connects and sends nothing, or trickles, must not hold everyone's applies.
        deadline = time.monotonic() + READ_TIMEOUT_S
        uid = _peer_uid(conn)
        if uid not in (os.geteuid(), 0):
            # Read to its end and dropped: closing on unread data would reset the connection
            # before the peer reads why.
            _recv_all(conn, deadline, MAX_REQUEST_BYTES)
            answer: Answer = {"ok": False, "diagnostics": [[True, f"refused: user {uid} does not own this state directory"]]}
        else:
            try:
                message = json.loads(_recv_all(conn, deadline, MAX_REQUEST_BYTES))
                if not isinstance(message, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, RecursionError) as e:
                answer = {"ok": False, "diagnostics": [[True, f"not a request: {e}"]]}
            else:
                try:
                    answer = self.handle(message)
                except Exception as e:  # said to the client; the store is as the handler left it
                    answer = {"ok": False, "diagnostics": [[True, f"error while applying: {e}"]]}
        conn.sendall(json.dumps(answer).encode())

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                # Wakes the accept() of the serving thread, which then sees the socket closed.
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        (self.root / SOCKET_FILE).unlink(missing_ok=True)
