"""The pydantic base for Istio resource specs: camelCase fields, unknown fields rejected, and a
record of the fields exitgate parses but does not implement yet, so they are reported, never
silently ignored.

Validation happens in two passes, both reporting the exact field path:

- pydantic: structure, types, enums, number ranges, and the syntax of single values (host
  names, IP addresses, port names), so these are all reported at once;
- ``Spec.issues``: Istio's rules that relate several fields (duplicate port names, ``resolution``
  versus ``endpoints``, TLS settings that exclude each other, ...), run once the spec parsed.

It also holds Istio's name rules (``pkg/config/validation``, ``pkg/config/labels``), shared by
every kind.
"""

from __future__ import annotations

import functools

import ipaddress
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic.alias_generators import to_camel

from exitgate.api import diagnostics as dx
from exitgate.api.diagnostics import Severity

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """One broken rule, at ``path`` relative to the model that found it."""

    path: Path
    message: str
    severity: Severity = Severity.ERROR
    code: str = dx.INVALID_VALUE


@dataclass(frozen=True)
class Where:
    """What a rule needs besides the spec: the resource's namespace (``.`` in ``exportTo`` and in
    Sidecar hosts means it)."""

    namespace: str = "default"


class Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True
    )

    # Python names of fields Istio defines that exitgate does not act on yet.
    UNSUPPORTED: ClassVar[frozenset[str]] = frozenset()

    def unsupported_values(self) -> list[tuple[str | Path, str]]:
        """(field alias or path, message) for values this model accepts as Istio does but
        exitgate cannot act on yet. Overridden where a value, not a whole field, is the limit."""
        return []

    def issues(self, where: Where) -> Iterable[Issue]:
        """Istio's rules over several fields of this model (paths relative to it). The fields'
        own models are asked separately."""
        return ()


@functools.cache
def _aliases(cls: type[BaseModel]) -> dict[str, str]:
    # Per model class, once: reading ``model_fields`` is slow in pydantic 2.11 and more, and
    # these walks ask for every field of 30,000 documents.
    return {name: f.alias or name for name, f in cls.model_fields.items()}


def _alias(model: BaseModel, name: str) -> str:
    # A field the model keeps unjudged (``extra="allow"``, api.kube) is named as written.
    return _aliases(type(model)).get(name, name)


@functools.cache
def nesting_fields(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(name, alias) of the fields of ``cls`` whose values may hold models, in declaration order:
    the walks below look at no other field (most are scalars: a third of a walk's time)."""
    return tuple((name, f.alias or name) for name, f in cls.model_fields.items() if _may_hold_model(f.annotation))


# Longer strings are rarely repeated (certificates, patterns, descriptions): not worth interning.
SHARED_STRING_MAX = 100


def shared_string(value: str) -> str:
    """``value``, or the interpreter's one copy of it when it is short (``share_alike``)."""
    return sys.intern(value) if len(value) <= SHARED_STRING_MAX else value


def share_alike(model: BaseModel, field_sets: dict[frozenset[str], set[str]], *, strings: bool = True) -> None:
    """What the store's 30,000 resources at 10,000 services hold many times over, kept once:

    - the set of fields each pydantic model's document gave (170,000 sets, 35 MiB), most of them
      alike: each distinct one is kept once in ``field_sets`` and shared. Safe for frozen models:
      pydantic changes the set only on assignment (refused) and on ``model_copy``, which copies
      it first;
    - each short string a field holds, directly or in a list or a map: the interpreter's one copy
      (``sys.intern``, freed with its last holder). A host is in four documents, a port name, a
      protocol or a gateway's name in thousands (bench/RESULTS.md). Not with ``strings`` false
      (a Secret's model: no credential goes into the interpreter's shared strings).

    A loop over a stack, not a recursion: the store's load walks every model of every resource,
    and the calls were a third of it."""
    intern, limit = sys.intern, SHARED_STRING_MAX if strings else -1
    stack = [model]
    pop, push = stack.pop, stack.append
    while stack:
        m = pop()
        fields = m.__pydantic_fields_set__
        shared = field_sets.setdefault(frozenset(fields), fields)
        if shared is not fields:
            object.__setattr__(m, "__pydantic_fields_set__", shared)
        values = m.__dict__
        for name, value in values.items():
            kind = type(value)
            if kind is str:
                if len(value) <= limit:
                    values[name] = intern(value)
            elif kind is list:
                for i, item in enumerate(value):
                    if type(item) is str:
                        if len(item) <= limit:
                            value[i] = intern(item)
                    elif isinstance(item, BaseModel):
                        push(item)
            elif kind is dict:
                for key, item in value.items():
                    if type(item) is str:
                        if len(item) <= limit:
                            value[key] = intern(item)
                    elif isinstance(item, BaseModel):
                        push(item)
            elif isinstance(value, BaseModel):
                push(value)
            elif kind is tuple:
                stack.extend(item for item in value if isinstance(item, BaseModel))


def _may_hold_model(tp: Any) -> bool:
    if isinstance(tp, type) and not typing.get_args(tp):
        return issubclass(tp, BaseModel)
    args = typing.get_args(tp)
    if not args:
        return True  # Any, an unresolved name: look, to be safe
    if typing.get_origin(tp) is typing.Literal:
        return False
    if typing.get_origin(tp) is Annotated:
        return _may_hold_model(args[0])
    return any(_may_hold_model(a) for a in args if a is not type(None) and a is not Ellipsis)


def _children(model: BaseModel, path: Path) -> Iterable[tuple[Path, BaseModel]]:
    given = model.model_fields_set
    values = model.__dict__
    for name, alias in nesting_fields(type(model)):
        if name not in given:
            continue
        value: Any = values.get(name)
        if isinstance(value, BaseModel):
            yield path + (alias,), value
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield path + (alias, i), item
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield path + (alias, str(key)), item


def find_unsupported(model: BaseModel, path: Path = (), where: Where | None = None) -> list[tuple[Path, str]]:
    """Every (field path, message) in ``model`` that exitgate does not support yet, among the
    valid values only: a field whose own value, or anything inside it, breaks one of Istio's rules
    is reported as invalid (``find_issues``, EG0005), not as unsupported, so a mistake is never
    hidden behind "not supported yet"."""
    found = _unsupported(model, path)
    if not found:
        return found
    # Only a resource with something unsupported pays for the rules a second time.
    broken = [i.path for i in find_issues(model, where or Where(), path) if i.severity is Severity.ERROR]
    return [(p, m) for p, m in found if not any(b[:len(p)] == p for b in broken)]


def _unsupported(model: BaseModel, path: Path) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    skip: set[str] = set()
    if isinstance(model, Spec):
        for name in sorted(model.model_fields_set & model.UNSUPPORTED):
            found.append((path + (_alias(model, name),), "this field is not supported by exitgate yet"))
            skip.add(_alias(model, name))
        for where, message in model.unsupported_values():
            found.append((path + ((where,) if isinstance(where, str) else where), message))
    for sub, child in _children(model, path):
        if sub[len(path)] not in skip:
            found.extend(_unsupported(child, sub))
    return found


def find_issues(model: BaseModel, where: Where, path: Path = ()) -> list[Issue]:
    """Every broken cross-field rule in ``model`` and the models inside it, with full paths."""
    found: list[Issue] = []
    if isinstance(model, Spec):
        found.extend(Issue(path + i.path, i.message, i.severity, i.code) for i in model.issues(where))
    for sub, child in _children(model, path):
        found.extend(find_issues(child, where, sub))
    return found


def warning(path: Path, message: str) -> Issue:
    return Issue(path, message, Severity.WARNING)


# --- Istio's name rules --------------------------------------------------------------------------
# Each check returns None when the value is fine, else a message that says how to fix it.

_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_WILDCARD_LABEL = re.compile(r"^(\*|(\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$")
_QUALIFIED_NAME = re.compile(r"^(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)*$")

HOST_RULE = ("a host must be a fully qualified domain name (like api.example.com) or a short name, "
             "a wildcard '*' beginning at most its first label (like *.example.com)")


def is_partial_wildcard(host: str) -> bool:
    """Istio's ``ValidatePartialWildCard``: a '*' that is not the whole host nor a leading ``*.``
    (``*example.com``, ``*-api.example.com``). ServiceEntry, VirtualService and DestinationRule
    hosts may be such; Gateway and Sidecar hosts may not."""
    return "*" in host and host != "*" and not host.startswith("*.")


def is_dns_label(value: str) -> bool:
    """Istio's ``IsDNS1123Label``: 1-63 letters, digits or '-', starting and ending alphanumeric."""
    return len(value) <= 63 and bool(_LABEL.match(value))


def label_problem(value: str, what: str) -> str | None:
    if not value:
        return f"{what} must not be empty"
    if not is_dns_label(value):
        return (f"{what} {value!r} is not a valid DNS label: use 1-63 letters, digits and '-', starting and "
                f"ending with a letter or digit")
    return None


def host_problem(host: str, *, wildcard: bool = True, partial: bool = True, rule: str = HOST_RULE) -> str | None:
    """Istio's ``ValidateWildcardDomain`` (``wildcard``) or ``ValidateFQDN``. The first label may
    be '*', or begin with '*' (``*example.com``, ``*-api.example.com``), as Istio's label rule
    admits; ``partial=False`` adds Istio's ``ValidatePartialWildCard`` (Gateway and Sidecar hosts:
    '*' alone or a leading ``*.`` only)."""
    if not host:
        return "host must not be empty"
    if len(host) > 255:
        return f"host {host[:40]!r}... is longer than 255 characters"
    first, dot, rest = host.partition(".")
    if "*" in host:
        if not wildcard:
            return f"{host!r}: no wildcard here; name one host, like api.example.com"
        if not partial and is_partial_wildcard(host):
            return (f"partial wildcard {host!r} is not allowed here: '*' must be the whole host or the whole "
                    f"first label, like *.example.com")
        if "*" in rest:
            return (f"{host!r} is not a valid host name: a wildcard '*' may only begin the first label, like "
                    f"*.example.com")
    if wildcard:
        if len(first) > 63 or not _WILDCARD_LABEL.match(first):
            return f"{host!r} is not a valid host name (label {first!r}); {rule}"
        if not dot:
            return None
        labels = rest.split(".")
    else:
        labels = host.split(".")
    if labels[-1].isdigit():
        return (f"{host!r} is not a valid host name: the last label {labels[-1]!r} cannot be all digits "
                f"(an IP address is not a host name here)")
    for i, label in enumerate(labels):
        if i == len(labels) - 1 and label == "":
            break  # a trailing dot, as in "istio.io."
        if not is_dns_label(label):
            return f"{host!r} is not a valid host name (label {label!r}); {rule}"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_or_cidr_problem(value: str, what: str = "address") -> str | None:
    """Istio's ``ValidateIPSubnet``: an IP address or a CIDR block."""
    if value.count("/") == 1:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{what} {value!r} is not a valid CIDR block (like 10.0.0.0/16)"
        return None
    if not is_ip(value):
        return f"{what} {value!r} is not a valid IP address or CIDR block"
    return None


UNIX_PREFIX = "unix://"


def unix_address_problem(value: str) -> str | None:
    """Istio's ``ValidateUnixAddress`` for the part after ``unix://``."""
    if not value:
        return "a unix address needs a path after unix:// (like unix:///var/run/app.sock)"
    if value.startswith("@"):
        return None
    if not value.startswith("/") or value.endswith("/"):
        return f"unix address {value!r} must be an absolute path to a file (like unix:///var/run/app.sock)"
    return None


def label_key_problem(key: str) -> str | None:
    """Kubernetes label keys, as Istio checks them: an optional DNS prefix and '/', then a name."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"invalid label key {key!r}: the prefix before '/' must be a DNS subdomain"
    if not _QUALIFIED_NAME.match(name) or len(name) > 63:
        return (f"invalid label key {key!r}: up to 63 letters, digits, '-', '_' or '.', starting and ending "
                f"with a letter or digit")
    return None


def labels_issues(labels: dict[str, str] | None, path: Path) -> list[Issue]:
    out = []
    for key, value in (labels or {}).items():
        problem = label_key_problem(key)
        if problem:
            out.append(Issue(path + (key,), problem))
        elif value and not _QUALIFIED_NAME.match(value):
            out.append(Issue(path + (key,), f"invalid label value {value!r}: letters, digits, '-', '_' or '.', "
                                           f"starting and ending with a letter or digit"))
    return out


def selector_issues(labels: dict[str, str] | None, path: Path, what: str = "selector") -> list[Issue]:
    """Istio's workload selector rules: no empty keys, no wildcards; empty selects everything."""
    out = []
    if labels is not None and not labels:
        out.append(warning(path, f"{what} has no labels, so it selects every workload in the namespace"))
    for key, value in (labels or {}).items():
        if not key:
            out.append(Issue(path, f"{what}: empty label key is not allowed"))
        elif "*" in key or "*" in value:
            out.append(Issue(path + (key,), f"{what}: wildcards are not supported in labels ({key}={value}); "
                                           f"name exact label values"))
    return out


def export_to_issues(values: Sequence[str] | None, namespace: str, path: Path, *,
                     service_entry: bool = False) -> list[Issue]:
    """Istio's ``validateExportTo``: '.', '*', a namespace, or (ServiceEntry only) '~'."""
    out: list[Issue] = []
    if not values:
        return out
    seen: set[str] = set()
    for i, value in enumerate(values):
        key = namespace if value == "." else value
        if key in seen:
            what = f"'.' and the resource's own namespace {namespace!r}" if value == "." or value == namespace \
                else repr(value)
            out.append(Issue(path + (i,), f"duplicate exportTo entry: {what} name the same namespaces; remove one"))
            continue
        if value == "~" and not service_entry:
            out.append(Issue(path + (i,), "exportTo '~' (no one) is allowed only in a ServiceEntry; "
                                          "use '.' to keep this resource in its own namespace"))
            continue
        if value not in (".", "*", "~") and not is_dns_label(value):
            tilde = ", '~'" if service_entry else ""
            out.append(Issue(path + (i,), f"exportTo entry {value!r} must be '.', '*'{tilde} or a namespace name"))
            continue
        seen.add(key)
    if "*" in seen and len(values) > 1:
        out.append(Issue(path, "exportTo '*' (every namespace) cannot be combined with other entries; "
                               "use '*' alone or list the namespaces"))
    if "~" in seen and len(values) > 1:
        out.append(Issue(path, "exportTo '~' (no one) cannot be combined with other entries"))
    return out


# The validation context of a document read back from the store: exitgate wrote it after it
# passed every check, so the checks are not run again (a sixth of a store's load at 30,000).
STORED: Mapping[str, bool] = MappingProxyType({"stored": True})


def checked(fn: Callable[[str], str | None]) -> AfterValidator:
    """A pydantic validator from one of the checks above (not run on a stored document)."""

    def run(value: str, info: ValidationInfo) -> str:
        if info.context is STORED:
            return value
        problem = fn(value)
        if problem:
            raise ValueError(problem)
        return value
    return AfterValidator(run)


# Value types with Istio's syntax checked by pydantic, so the error names the list index.
IPOrCIDR = Annotated[str, checked(ip_or_cidr_problem)]
PortName = Annotated[str, checked(lambda v: label_problem(v, "port name"))]
SubsetName = Annotated[str, checked(lambda v: label_problem(v, "subset name"))]


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_SYNTAX = "write it like 5s, 100ms or 1m30s"


def duration_ns(value: str) -> float | None:
    """A duration as Istio's CRDs take it ("5s", "1m30s", "100ms"), in nanoseconds; None if it
    is not one."""
    pos, total = 0, 0.0
    while pos < len(value):
        m = _DURATION_PART.match(value, pos)
        if m is None:
            return None
        total += float(m.group(1)) * _DURATION_NS[m.group(2)]
        pos = m.end()
    return total if value else None


def duration_syntax_problem(value: str) -> str | None:
    """Any duration, 0 included: the fields Istio's CRDs mark ``duration-validation:none``."""
    if not value:
        return f"a duration must not be empty: {_DURATION_SYNTAX}"
    if duration_ns(value) is None:
        return f"{value!r} is not a duration: {_DURATION_SYNTAX}"
    return None


def duration_problem(value: str) -> str | None:
    """Istio's ``ValidateDuration``: at least 1ms, in whole ms."""
    problem = duration_syntax_problem(value)
    if problem:
        return problem
    total = duration_ns(value) or 0.0
    if total < 1_000_000:
        return f"duration {value!r} must be at least 1ms"
    if total % 1_000_000:
        return f"duration {value!r} must be a whole number of milliseconds"
    return None


def duration_or_off_problem(value: str) -> str | None:
    """A connection pool's tcp ``idleTimeout``: Istio skips ``ValidateDuration`` when the value
    is 0 in whole milliseconds, which turns the timeout off."""
    problem = duration_syntax_problem(value)
    if problem:
        return problem
    if (duration_ns(value) or 0.0) < 1_000_000:
        return None
    return duration_problem(value)


Duration = Annotated[str, checked(duration_problem)]
AnyDuration = Annotated[str, checked(duration_syntax_problem)]
DurationOrOff = Annotated[str, checked(duration_or_off_problem)]
