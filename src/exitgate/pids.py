"""Whether a process runs, read from /proc: the one question about processes that commands ask
before anything else (is the `up` a runtime file names still there?), so it imports nothing."""

from __future__ import annotations


def alive(pid: int) -> bool:
    """A running process (a zombie, exited but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False
