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

Keys by identity still cost a lookup per service, and at 10,000 services the lookups that build
them were most of a push. So the memo also knows what changed between one snapshot and the next
(``observe``): the hosts the changed resources name, or "everything" when a resource of another
kind, a wildcard host or the mesh changed. A fragment of a translation that concerns some hosts
(``fragment``: one service's clusters, one host's virtual host) is then used again without
computing any key beyond the host, as long as no snapshot since it was built changed one of the
hosts it concerns or read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
M = TypeVar("M")
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


def reads_only(_: object) -> Hashable:
    """A ``Recorded`` sign for a reader that needs the keys read, not the values."""
    return None


# How many snapshots' deltas the memo remembers: a fragment older than that is built again.
DELTAS_KEPT = 8


class TranslationMemo:
    """Key -> (what the key names, kept alive; the result; what else the result read)."""

    def __init__(self) -> None:
        # Entries: (keep, result, evidence); a fragment's, a list (``fragment``).
        self._previous: dict[Hashable, Any] = {}
        self._current: dict[Hashable, Any] = {}
        # The resources of the last snapshot observed (by identity: kept alive, so that an id
        # seen again is the same object), the mesh it was built for, and each snapshot's delta.
        self._seen: dict[int, object] | None = None
        self._seen_mesh: object = None
        self._generation = 0
        self._deltas: dict[int, frozenset[str] | None] = {}

    def same_mesh(self, mesh: M) -> M:
        """The mesh of the last snapshot observed if it equals ``mesh``: the inventory of applied
        Kubernetes objects builds a new, equal one at each push, and what is memoized on the
        mesh's identity (the registry's services, and the fragments keyed on them) is then
        used again."""
        seen = self._seen_mesh
        if seen is not None and seen is not mesh and type(seen) is type(mesh) and seen == mesh:
            return seen
        return mesh

    def observe(self, resources: Iterable[object], mesh: object,
                touched: Callable[[list[Any]], frozenset[str] | None]) -> int:
        """A new snapshot of ``resources`` for ``mesh``: its generation, and its delta from the
        last one observed, ``touched`` (the hosts the added and removed resources name, or None
        for everything)."""
        current = {id(r): r for r in resources}
        delta: frozenset[str] | None = None
        # By identity: a snapshot takes the last mesh when its own is equal (``same_mesh``).
        if self._seen is not None and self._seen_mesh is mesh:
            seen = self._seen
            changed = [current[i] for i in current.keys() - seen.keys()]
            changed += [seen[i] for i in seen.keys() - current.keys()]
            delta = touched(changed)
        self._seen, self._seen_mesh = current, mesh
        self._generation += 1
        self._deltas[self._generation] = delta
        self._deltas.pop(self._generation - DELTAS_KEPT, None)
        return self._generation

    def _clean(self, since: int, generation: int, hosts: tuple[str, ...]) -> bool:
        for g in range(since + 1, generation + 1):
            delta = self._deltas.get(g)
            if delta is None or not delta.isdisjoint(hosts):
                return False
        return True

    def fragment(self, generation: int, key: Hashable, hosts: Iterable[str], keep: object,
                 build: Callable[[], tuple[T, Collection[str]]]) -> T:
        """The part of a translation that concerns ``hosts`` at snapshot ``generation``: the
        one built for an earlier snapshot, if none since changed those hosts or the hosts it
        read; else ``build()``, which returns the result and the hosts it read. ``key`` names
        everything else the result depends on that is not a resource (the proxy, its ports)."""
        # A fragment's entry is a list, [keep, result, generation, hosts], renewed in place when
        # it is used again; the hosts a tuple: 40,000 fragments at 10,000 services.
        entry = self._current.get(key) or self._previous.get(key)
        if entry is not None and entry[2] > generation:
            # Built for a newer snapshot than this one (an older snapshot translated late):
            # nothing says what changed back, so built again, and the newer entry kept.
            return build()[0]
        if entry is not None:
            since, deps = entry[2], entry[3]
            # The usual case first, without the loop: built for the snapshot just before.
            delta = self._deltas.get(generation) if since == generation - 1 else None
            if (delta is not None and delta.isdisjoint(deps)) or self._clean(since, generation, deps):
                entry[2] = generation
                self._current[key] = entry
                found: T = entry[1]
                return found
        value, reads = build()
        self._current[key] = [keep, value, generation, tuple(dict.fromkeys((*hosts, *reads)))]
        return value

    def fragment_reading(self, generation: int, key: Hashable, hosts: Iterable[str], keep: object,
                         services: Mapping[str, V], build: Callable[[Mapping[str, V]], T]) -> T:
        """``fragment`` for a result built from ``services`` (by host): the hosts it reads there
        are recorded as hosts it depends on."""
        def recorded() -> tuple[T, Collection[str]]:
            reads = Recorded(services, reads_only)
            return build(reads), reads.reads.keys()
        return self.fragment(generation, key, hosts, keep, recorded)

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
        """``get`` for a result that reads nothing beyond what its key names (written out: it
        runs for every VirtualService and service at every push)."""
        entry = self._current.get(key)
        if entry is None:
            entry = self._previous.get(key)
            if entry is None:
                entry = (keep, build(), None)
            self._current[key] = entry
        result: T = entry[1]
        return result

    def next_push(self) -> None:
        self._previous, self._current = self._current, {}

    def __len__(self) -> int:
        return len(self._current)
