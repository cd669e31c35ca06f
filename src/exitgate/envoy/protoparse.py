"""Envoy's JSON shape -> a typed message, as ``json_format.ParseDict`` does, several times faster.

The builders in ``resources`` and ``routes`` write each resource as the dict Envoy's documentation
shows and parse it into its message. ``json_format`` is pure Python and re-reads each message's
descriptor for every field of every message: at 10,000 services it was most of the first push
(7.7 s for the gateway's 20,000 clusters). Here each message type's fields are looked up once
(a table per descriptor, memoized) and the walk does only dict lookups and setattr.

Same input, same message, same errors: what this module does not handle itself (a well-known
type other than Any, Duration, Struct, Value, ListValue and the wrappers, or a value of an
unexpected shape) goes to ``json_format`` for that part, so its rules and messages still apply
there. An unknown field name is an error, as it is for ``ParseDict``: the dicts are ours, and a
typo must fail the golden tests, not reach Envoy. ``tests/unit/test_protoparse.py`` checks that
both parse every resource of every golden case to equal messages.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import json_format, symbol_database
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

# What a field holds, decided once per field.
_SCALAR, _ENUM, _BYTES, _MESSAGE, _REPEATED_SCALAR, _REPEATED_ENUM, _REPEATED_MESSAGE, _MAP, _OTHER = range(9)

_INTEGER_TYPES = frozenset({
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
})
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})

# (kind, attribute name, enum values by name or None, the oneof it belongs to or None)
_Field = tuple[int, str, "dict[str, int] | None", "str | None"]


class Reused:
    """A message's data that a builder knows recurs across resources (a route's retry policy,
    a cluster's circuit breakers): parsed once per distinct content, then merged as bytes.
    Anywhere a message's dict may stand; the content is read when the message is parsed."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data


def parse(data: dict[str, Any], message: M) -> M:
    """``data`` (Envoy's JSON shape, proto or JSON field names) into ``message``, which is returned."""
    try:
        _merge(data, message)
    except json_format.ParseError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError):
        # A shape the fast walk does not take: the slow parser decides, and gives the exact
        # error (which field, why) if there is one.
        message.Clear()
        json_format.ParseDict(unwrapped(data), message)
    return message


def unwrapped(data: Any) -> Any:
    """``data`` with each ``Reused`` replaced by its content (for ``json_format``)."""
    if type(data) is Reused:
        return unwrapped(data.data)
    if isinstance(data, dict):
        return {k: unwrapped(v) for k, v in data.items()}
    if isinstance(data, list):
        return [unwrapped(v) for v in data]
    return data


@functools.cache
def _fields(descriptor: Descriptor) -> dict[str, _Field]:
    """A message type's fields by proto and JSON name (a pure function of the descriptor,
    memoized: descriptors are process-wide in protobuf already)."""
    table: dict[str, _Field] = {}
    for f in descriptor.fields:
        enum = {v.name: v.number for v in f.enum_type.values} if f.enum_type is not None else None
        is_repeated = f.is_repeated
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            kind = _MAP
        elif f.message_type is not None:
            full = f.message_type.full_name
            if full.startswith("google.protobuf.") and full not in _HANDLED_WKT:
                kind = _OTHER
            else:
                kind = _REPEATED_MESSAGE if is_repeated else _MESSAGE
        elif enum is not None:
            kind = _REPEATED_ENUM if is_repeated else _ENUM
        elif f.type == FieldDescriptor.TYPE_BYTES:
            kind = _OTHER if is_repeated else _BYTES
        elif f.type in _INTEGER_TYPES or f.type in _FLOAT_TYPES:
            # JSON allows numbers as strings; ParseDict's rules (and its errors) handle those.
            kind = _OTHER
        else:
            kind = _REPEATED_SCALAR if is_repeated else _SCALAR
        oneof = f.containing_oneof.name if f.containing_oneof is not None else None
        entry: _Field = (kind, f.name, enum, oneof)
        table[f.name] = entry
        table[f.json_name] = entry
    return table


_HANDLED_WKT = frozenset({
    "google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.Struct", "google.protobuf.Empty",
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.Int64Value", "google.protobuf.UInt64Value",
})


@functools.cache
def _numeric_fields(descriptor: Descriptor) -> dict[str, tuple[bool, bool]]:
    """Numeric fields by name -> (repeated, floating)."""
    return {
        f.name: (f.is_repeated, f.type in _FLOAT_TYPES)
        for f in descriptor.fields
        if f.type in _INTEGER_TYPES or f.type in _FLOAT_TYPES
    }


def _merge(data: Any, message: Message) -> None:
    if type(data) is Reused:
        text = _json_text(data.data)
        if text is None:
            _merge(data.data, message)
        else:
            message.MergeFromString(_parsed_bytes(message.DESCRIPTOR.full_name, text))
        return
    descriptor = message.DESCRIPTOR
    full = descriptor.full_name
    if full.startswith("google.protobuf."):
        _well_known(data, message, full)
        return
    if not isinstance(data, dict):
        raise json_format.ParseError(f"Message type \"{full}\" expects a JSON object, got {data!r}")
    fields = _fields(descriptor)
    seen: set[str] = set()
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            raise json_format.ParseError(f'Message type "{full}" has no field named "{key}".')
        kind, name, enum, oneof = field
        # ParseDict's check: two fields of one oneof.
        if oneof is not None and value is not None:
            if oneof in seen:
                raise json_format.ParseError(f'Message type "{full}" should not have multiple "{oneof}" oneof fields.')
            seen.add(oneof)
        if value is None:
            if kind == _OTHER:
                json_format.ParseDict({key: value}, message)  # a Value's null
            continue  # ParseDict: null leaves the field unset
        if kind == _SCALAR:
            setattr(message, name, value)
        elif kind == _MESSAGE:
            sub = getattr(message, name)
            sub.SetInParent()
            _merge(value, sub)
        elif kind == _REPEATED_MESSAGE:
            container = getattr(message, name)
            for item in value:
                _merge(item, container.add())
        elif kind == _ENUM:
            setattr(message, name, enum[value] if isinstance(value, str) else value)  # type: ignore[index]
        elif kind == _REPEATED_SCALAR:
            getattr(message, name).extend(value)
        elif kind == _REPEATED_ENUM:
            getattr(message, name).extend(enum[v] if isinstance(v, str) else v for v in value)  # type: ignore[index]
        elif kind == _BYTES:
            setattr(message, name, base64.b64decode(value) if isinstance(value, str) else value)
        elif kind == _MAP:
            _map(value, message, name)
        else:
            _numeric_or_other(key, value, message, name)


def _numeric_or_other(key: str, value: Any, message: Message, name: str) -> None:
    numeric = _numeric_fields(message.DESCRIPTOR).get(name)
    if numeric is not None:
        repeated, floating = numeric
        kind = float if floating else int
        if not repeated and type(value) is kind:
            setattr(message, name, value)
            return
        if not repeated and not floating and type(value) is str and value.isascii() and value.isdigit():
            # A 64-bit integer as JSON writes it, a string of digits: ParseDict's int(value).
            setattr(message, name, int(value))
            return
        if repeated and all(type(v) is kind for v in value):
            getattr(message, name).extend(value)
            return
    json_format.ParseDict({key: value}, message)


def _map(value: dict[str, Any], message: Message, name: str) -> None:
    container = getattr(message, name)
    entry = message.DESCRIPTOR.fields_by_name[name].message_type
    value_field = entry.fields_by_name["value"]
    if value_field.message_type is not None:
        for k, v in value.items():
            _merge(v, container[k])
    elif value_field.enum_type is not None or value_field.type == FieldDescriptor.TYPE_BYTES or \
            entry.fields_by_name["key"].type != FieldDescriptor.TYPE_STRING or \
            value_field.type in _INTEGER_TYPES or value_field.type in _FLOAT_TYPES:
        json_format.ParseDict({name: value}, message)
    else:
        for k, v in value.items():
            container[k] = v


@functools.cache
def _message_class(type_url: str) -> Callable[[], Message]:
    full_name = type_url.rsplit("/", 1)[-1]
    cls: Callable[[], Message] = symbol_database.Default().GetSymbol(full_name)
    return cls


# The JSON values a wrapper takes directly; any other (a number as a string, say) goes to ParseDict.
_WRAPPER_VALUES: dict[str, tuple[type, ...]] = {
    "google.protobuf.BoolValue": (bool,), "google.protobuf.StringValue": (str,),
    "google.protobuf.DoubleValue": (int, float), "google.protobuf.FloatValue": (int, float),
    **{f"google.protobuf.{t}": (int,) for t in ("Int32Value", "UInt32Value", "Int64Value", "UInt64Value")},
}


def _well_known(data: Any, message: Any, full: str) -> None:
    if full == "google.protobuf.Any":
        if not isinstance(data, dict) or "@type" not in data:
            json_format.ParseDict(data, message)
            return
        type_url = data["@type"]
        try:
            inner = _message_class(type_url)()
        except KeyError:
            json_format.ParseDict(data, message)  # ParseDict's "Can not find message descriptor"
            return
        body: Any = {k: v for k, v in data.items() if k != "@type"}
        if inner.DESCRIPTOR.full_name.startswith("google.protobuf."):
            body = body.get("value")  # a well-known type inside Any sits under "value"
        text = _json_text(body)
        if text is None:
            _merge(body, inner)
            message.type_url, message.value = type_url, inner.SerializeToString(deterministic=True)
            return
        message.type_url, message.value = type_url, _parsed_bytes(type_url, text)
    elif full == "google.protobuf.Duration" and isinstance(data, str):
        message.FromJsonString(data)
    elif full == "google.protobuf.Struct" and isinstance(data, dict):
        message.update(data)
    elif full in _WRAPPER_VALUES and type(data) in _WRAPPER_VALUES[full]:
        message.value = data
    elif full == "google.protobuf.Empty" and data == {}:
        message.SetInParent()
    else:
        json_format.ParseDict(data, message)


def _json_text(data: Any) -> str | None:
    """``data`` as JSON text, the key of ``_parsed_bytes``; None for what JSON cannot write."""
    try:
        return json.dumps(data)
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=1024)
def _parsed_bytes(type_name: str, body: str) -> bytes:
    """The bytes of a message of ``type_name`` (a full name or an Any's type URL) parsed from
    ``body``, JSON text in its own key order: the same configuration rides in thousands of
    resources (an Any's body, a ``Reused`` part: every route's retry policy, every cluster's
    protocol options), and each costs a type lookup, a message and its serialization. A pure
    function of its arguments. Serialized deterministically: an Any's value is bytes a
    resource's deterministic serialization copies as they are, and a map inside (the stats
    loggers' Struct) would otherwise come out in an order that differs between processes."""
    inner = _message_class(type_name)()
    _merge(json.loads(body), inner)
    blob: bytes = inner.SerializeToString(deterministic=True)
    return blob
