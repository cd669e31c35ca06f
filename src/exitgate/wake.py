"""A running control plane learns of an applied change at once, instead of at its next poll.

After the store writes a new version, it sends one datagram to the control plane of the same
state directory (``wake``); the control plane's loop waits on that socket as well as on its poll
timer (``Waker.wait``). The datagram carries nothing: the control plane reads the store as it
always does, so a lost or forged wake-up changes nothing but timing. The socket is in Linux's
abstract namespace, named after the state directory (no path-length limit, nothing to clean up
after a crash); where that is not available, the poll timer alone is left, as before.
"""

from __future__ import annotations

import hashlib
import select
import socket
from pathlib import Path


def _address(state_root: Path) -> str:
    digest = hashlib.sha256(str(state_root.resolve()).encode()).hexdigest()[:16]
    return f"\0exitgate-wake-{digest}"


def wake(state_root: Path) -> None:
    """Tell the control plane of ``state_root``, if one runs, that the store changed."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"!", _address(state_root))
    except OSError:
        pass  # no control plane running (or no abstract sockets): it polls, or reads at start


class Waker:
    """The control plane's end: ``wait(timeout)`` returns True when woken, False on timeout."""

    def __init__(self, state_root: Path) -> None:
        self._sock: socket.socket | None = None
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(_address(state_root))
            s.setblocking(False)
            self._sock = s
        except OSError:
            self._sock = None

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def wait(self, timeout: float) -> bool:
        if self._sock is None:
            select.select([], [], [], timeout)
            return False
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return False
        while True:  # one reconcile covers every wake-up so far
            try:
                self._sock.recv(64)
            except BlockingIOError:
                return True
            except OSError:
                return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
