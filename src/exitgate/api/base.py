"""The pydantic base for Istio resource specs: camelCase fields, unknown fields rejected, and a
record of the fields exitgate parses but does not implement yet, so they are reported, never
silently ignored."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True
    )

    # Python names of fields Istio defines that exitgate does not act on yet.
    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    def unsupported_values(self) -> list[tuple[str, str]]:
        """(field alias, message) for values this model accepts as Istio does but exitgate
        cannot act on yet. Overridden where a value, not a whole field, is the limit."""
        return []


def _alias(model: BaseModel, name: str) -> str:
    field = type(model).model_fields[name]
    return field.alias or name


def find_unsupported(model: BaseModel, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every (field path, message) in ``model`` that exitgate does not support yet."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(model, Spec):
        for name in sorted(model.model_fields_set & model.UNSUPPORTED):
            found.append((path + (_alias(model, name),), "this field is not supported by exitgate yet"))
        for alias, message in model.unsupported_values():
            found.append((path + (alias,), message))
    for name in model.model_fields_set:
        if isinstance(model, Spec) and name in model.UNSUPPORTED:
            continue
        value: Any = getattr(model, name)
        sub = path + (_alias(model, name),)
        if isinstance(value, BaseModel):
            found.extend(find_unsupported(value, sub))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found.extend(find_unsupported(item, sub + (i,)))
    return found
