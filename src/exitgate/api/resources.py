"""A loaded Istio resource: its identity, typed spec, the plain data it came from and where."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar

from exitgate.api.base import Spec

# The spec's type: ``Resource[ServiceEntrySpec]`` for what the snapshot hands out by kind, plain
# ``Resource`` (= ``Resource[Spec]``) where any kind will do.
SpecT = TypeVar("SpecT", bound=Spec, default=Spec, covariant=True)


@dataclass(frozen=True)
class Source:
    file: str
    line: int


@dataclass(frozen=True)
class Resource(Generic[SpecT]):
    api_version: str
    kind: str
    namespace: str
    name: str
    spec: SpecT
    # The document as plain data (what is stored and what `get -o yaml` prints).
    raw: dict[str, Any] = field(compare=False, repr=False)
    source: Source | None = field(default=None, compare=False)

    def with_source(self, source: Source | None) -> Resource[SpecT]:
        """A copy with another source, without running ``__init__`` again as
        ``dataclasses.replace`` does (a store load gives each of 30,000 resources its line)."""
        return self._with(source=source)

    def with_raw(self, raw: dict[str, Any]) -> Resource[SpecT]:
        """A copy with another document (the store keeps only an Istio resource's metadata)."""
        return self._with(raw=raw)

    def with_identity(self, api_version: str, kind: str, namespace: str, raw: dict[str, Any]) -> Resource[SpecT]:
        """A copy with equal identity strings (the store's shared copies) and another document."""
        assert (api_version, kind, namespace) == (self.api_version, self.kind, self.namespace)
        return self._with(api_version=api_version, kind=kind, namespace=namespace, raw=raw)

    def _with(self, **fields: Any) -> Resource[SpecT]:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(fields)
        return new

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"
