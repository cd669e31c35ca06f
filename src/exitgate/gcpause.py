"""Pausing Python's cyclic garbage collector around bulk work.

Loading and translating allocate many small objects while tens of thousands of resources stay
alive; the collector then walks them all again and again (half the time of a 10,000-service
translation, two thirds of parsing 9,000 YAML documents, measured here). Nothing this work makes
is cyclic garbage, so the collector waits until it is done.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class _Pauses:
    """How many threads are in ``gc_paused`` now, and whether the collector ran before the
    first: the collector is the process's, so the pause is too. The control plane's push and
    an apply handed to it run in two threads; without the count, the first to finish enabled
    the collector under the other (2.8 s of full collections in a first push at 10,000)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.was_enabled = False


_PAUSES = _Pauses()  # the one process-wide collector's state: module-level by nature


@contextmanager
def gc_paused() -> Iterator[None]:
    with _PAUSES.lock:
        if _PAUSES.count == 0:
            _PAUSES.was_enabled = gc.isenabled()
            gc.disable()
        _PAUSES.count += 1
    try:
        yield
    finally:
        with _PAUSES.lock:
            _PAUSES.count -= 1
            if _PAUSES.count == 0 and _PAUSES.was_enabled:
                gc.enable()


class Settled:
    """What a push leaves alive (the configuration, its translations, the memos) is most of a
    control plane's objects, and every later full collection walks all of it again: 0.7 s at
    10,000 services, in the middle of the next push (``bench/one_more_breakdown.py``). After a
    push they are frozen (``gc.freeze``: out of the collector's sight). Refcounting still frees
    whatever of them a later push drops; only cyclic garbage among them waits, for ``idle()``:
    once nothing has changed for ``idle_s``, one full collection, then everything is frozen
    again."""

    def __init__(self, idle_s: float = 60.0) -> None:
        self.idle_s = idle_s
        self._since: float | None = None  # when the last push froze, if not collected since
        self._trim = _malloc_trim()

    def pushed(self, now: float) -> None:
        gc.freeze()
        self._since = now
        self.trim()

    def trim(self) -> None:
        """What was freed goes back to the system: glibc keeps freed heap pages otherwise
        (57 MiB of the control plane after one more at 10,000; 8 ms)."""
        if self._trim is not None:
            self._trim(0)

    def idle(self, now: float) -> bool:
        """Collect, if a push froze garbage and nothing changed for ``idle_s``; whether it did."""
        if self._since is None or now - self._since < self.idle_s:
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._since = None
        return True

    def release(self) -> None:
        """Unfreeze (the control plane stopped: its objects are no longer long-lived)."""
        gc.unfreeze()
        self._since = None


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, None where the C library has none."""
    try:
        # Named directly: find_library runs ldconfig, and glibc's name is this on Linux.
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim
