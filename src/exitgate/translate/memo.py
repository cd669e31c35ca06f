"""Translation results carried from one push to the next, so that one service more at 10,000
translates that service, not all of them again (issue 9: both proxies' translation was 1.4 s of
"one more" there).

What is memoized is pure in its inputs, and the inputs are named by identity: the store hands
the control plane the same frozen spec objects for documents that did not change, and the
registry hands out the same ``Service`` for a ServiceEntry that did not change. A memo entry
holds the objects its key names, so an ``id`` in a live key is never reused. Anything a result
reads beyond its key (a route's destination port taken from the destination service) is
recorded with it and checked before the result is used again.

Like ``envoy.snapshot.ProtoMemo``, the memo keeps what the last two pushes used, nothing older.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
E = TypeVar("E")


class Recorded(Mapping[K, V], Generic[K, V]):
    """A read-only view of a mapping that records each key read and what was found, so that a
    result built from it can be checked against a later mapping (``unchanged``)."""

    def __init__(self, base: Mapping[K, V], sign: Callable[[V | None], Hashable]) -> None:
        self._base = base
        self._sign = sign
        self.reads: dict[K, Hashable] = {}

    def __getitem__(self, key: K) -> V:
        # A miss is recorded too (``in`` comes here): a service added later changes the answer.
        value = self._base.get(key)
        self.reads[key] = self._sign(value)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: K, default: Any = None) -> Any:
        value = self._base.get(key)
        self.reads[key] = self._sign(value)
        return default if value is None else value

    def __iter__(self) -> Iterator[K]:
        raise TypeError("a recorded mapping is read by key only")

    def __len__(self) -> int:
        return len(self._base)


def unchanged(reads: Mapping[K, Hashable], now: Mapping[K, V], sign: Callable[[V | None], Hashable]) -> bool:
    return all(sign(now.get(k)) == s for k, s in reads.items())


class TranslationMemo:
    """Key -> (what the key names, kept alive; the result; what else the result read)."""

    def __init__(self) -> None:
        self._previous: dict[Hashable, tuple[object, Any, Any]] = {}
        self._current: dict[Hashable, tuple[object, Any, Any]] = {}

    def get(self, key: Hashable, keep: object, build: Callable[[], tuple[T, E]],
            still: Callable[[E], bool] | None = None) -> T:
        """``build`` returns the result and what else it read (its evidence); ``still`` says,
        at each later lookup, whether that evidence holds in the configuration at hand."""
        entry = self._current.get(key) or self._previous.get(key)
        if entry is not None and (still is None or still(entry[2])):
            self._current[key] = entry
            result: T = entry[1]
            return result
        value, evidence = build()
        self._current[key] = (keep, value, evidence)
        return value

    def value(self, key: Hashable, keep: object, build: Callable[[], T]) -> T:
        """``get`` for a result that reads nothing beyond what its key names."""
        return self.get(key, keep, lambda: (build(), None))

    def next_push(self) -> None:
        self._previous, self._current = self._current, {}

    def __len__(self) -> int:
        return len(self._current)
