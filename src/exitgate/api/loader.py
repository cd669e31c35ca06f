"""Reads multi-document YAML files and directories into typed resources and diagnostics.

Every diagnostic names the file, the line and the field path. Parsing is libyaml's (PyYAML's C
composer, ``fastyaml``) with the node tree kept beside each document, so a line is looked up
only for a diagnostic; ruamel.yaml's round-trip loader, six times slower, is used only for text libyaml
refuses (syntax errors, duplicate keys), whose messages it words better. Nothing here raises
for a user mistake: the caller gets the resources that are valid and a diagnostic for each
problem, and decides (``apply`` refuses a batch with any error).
"""

from __future__ import annotations

import datetime
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from exitgate.api import diagnostics as dx
from exitgate.api import sources
from exitgate.api.fastyaml import Located, fast_documents, locate_node
from exitgate.api.base import STORED, Spec, Where, find_issues, find_unsupported
from exitgate.api.core import SecretSpec
from exitgate.api.kube import KUBE_MODELS, KUBE_UNSUPPORTED, service_name_problem
from exitgate.api.meshconfig import MESH_CONFIGMAP, ConfigMapSpec
from exitgate.api.diagnostics import Diagnostic, Severity
from exitgate.api.networking import (
    DestinationRuleSpec,
    GatewaySpec,
    ServiceEntrySpec,
    VirtualServiceSpec,
)
from exitgate.api.resources import Resource, Source
from exitgate.api.security import AuthorizationPolicySpec
from exitgate.api.sidecar import SidecarSpec
from exitgate.gcpause import gc_paused

NETWORKING = "networking.istio.io"
NETWORKING_VERSIONS = ("v1alpha3", "v1beta1", "v1")

# Core (v1) kinds: their fields are top-level, not under spec.
CORE_MODELS: dict[str, type[Spec]] = {"Secret": SecretSpec, "ConfigMap": ConfigMapSpec}
# Kubernetes kinds read as the inventory (api.kube), with their apiVersion; also top-level fields.
TOP_LEVEL_MODELS: dict[str, tuple[str, type[Spec]]] = {
    **{kind: ("v1", model) for kind, model in CORE_MODELS.items()},
    **{kind: (version, model) for kind, (version, model, _) in KUBE_MODELS.items()},
}
CLUSTER_SCOPED = frozenset(kind for kind, (_, _, namespaced) in KUBE_MODELS.items() if not namespaced)

SECURITY = "security.istio.io"
SECURITY_VERSIONS = ("v1beta1", "v1")

# Every kind with a spec: its API group, the versions served, and its model.
SPEC_MODELS: dict[str, tuple[str, tuple[str, ...], type[Spec]]] = {
    "ServiceEntry": (NETWORKING, NETWORKING_VERSIONS, ServiceEntrySpec),
    "Gateway": (NETWORKING, NETWORKING_VERSIONS, GatewaySpec),
    "VirtualService": (NETWORKING, NETWORKING_VERSIONS, VirtualServiceSpec),
    "DestinationRule": (NETWORKING, NETWORKING_VERSIONS, DestinationRuleSpec),
    "Sidecar": (NETWORKING, NETWORKING_VERSIONS, SidecarSpec),
    "AuthorizationPolicy": (SECURITY, SECURITY_VERSIONS, AuthorizationPolicySpec),
}

# Other kinds users bring with Istio egress YAML that exitgate knows of but does not implement yet.
KNOWN_UNSUPPORTED_KINDS = {
    "PeerAuthentication", "RequestAuthentication",
    "WorkloadEntry", "WorkloadGroup", "EnvoyFilter", "ProxyConfig", "Telemetry",
    *KUBE_UNSUPPORTED,
}

DRY_RUN_ANNOTATION = "istio.io/dry-run"

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")



class ObjectMeta(BaseModel):
    """Kubernetes object metadata; the server-set fields are accepted so `get -o yaml` output
    from a cluster can be applied again."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    generation: int | None = None
    creationTimestamp: Any = None
    managedFields: list[Any] | None = None
    finalizers: list[str] | None = None
    ownerReferences: list[Any] | None = None
    generateName: str | None = None


@dataclass
class LoadResult:
    resources: list[Resource]
    diagnostics: list[Diagnostic]
    # The text is not valid YAML: its one diagnostic says where, and nothing of it was loaded.
    unparsed: bool = False

    @property
    def ok(self) -> bool:
        return not dx.has_errors(self.diagnostics)


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Files as given; directories expanded to their YAML files, sorted, recursively."""
    files, problems = sources.expand(paths)
    return files, [unreadable(path, problem) for path, problem in problems]


def unreadable(path: str, problem: str) -> Diagnostic:
    return Diagnostic(dx.NOT_FOUND, Severity.ERROR, problem, file=path)


def load_paths(paths: Iterable[str | Path], default_namespace: str = "default", keep_unsupported: bool = False,
               keep_invalid: bool = False) -> LoadResult:
    """``keep_unsupported``: keep resources whose only errors are fields exitgate does not
    support yet (EG0006, then reported as warnings), for ``analyze``, which judges YAML written
    for Istio whatever exitgate can run. ``keep_invalid``: also keep a resource that breaks a
    validation rule once its typed form is built (its errors are still reported, as errors), as
    Istio's analysis still reads a resource its validation refuses; one whose structure does not
    parse (a missing required field, a wrong type) is never kept."""
    texts, problems = sources.read(paths)
    result = load_sources(texts, default_namespace, keep_unsupported, keep_invalid)
    result.diagnostics[:0] = [unreadable(path, problem) for path, problem in problems]
    return result


# How a caller may load one text in parts (the command's ``cli.forked.load_in_two``): given the
# text and the loader of a text, the whole text's result, or None to leave it to the loader.
Splitter = Callable[[str, Callable[[str], "LoadResult"]], "LoadResult | None"]


def load_sources(texts: Iterable[tuple[str, str]], default_namespace: str = "default", keep_unsupported: bool = False,
                 keep_invalid: bool = False, split: Splitter | None = None) -> LoadResult:
    """Every resource of each (file name, text), as ``load_text`` loads one; ``split``, the
    caller's way of loading a text in parts, with the same result (this layer forks nothing)."""
    result = LoadResult([], [])
    for filename, text in texts:
        load = partial(load_text, filename=filename, default_namespace=default_namespace,
                       keep_unsupported=keep_unsupported, keep_invalid=keep_invalid)
        sub = (split(text, load) if split is not None else None) or load(text)
        result.resources.extend(sub.resources)
        result.diagnostics.extend(sub.diagnostics)
    return result


def load_text(text: str, filename: str, default_namespace: str = "default", keep_unsupported: bool = False,
              keep_invalid: bool = False) -> LoadResult:
    """Parse every YAML document of ``text``; see the module docstring and ``load_paths``."""
    with gc_paused():
        return _load_text(text, filename, default_namespace, keep_unsupported, keep_invalid)


def _load_text(text: str, filename: str, default_namespace: str, keep_unsupported: bool,
               keep_invalid: bool = False) -> LoadResult:
    result = LoadResult([], [])
    fast = fast_documents(text)
    try:
        docs = fast if fast is not None else list(_yaml().load_all(io.StringIO(text)))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        context = e.context
        cm = e.context_mark
        if context and cm is not None and mark is not None and mark is not cm and cm.line != mark.line:
            # Keep where the unclosed thing began (a "[" several lines up), not only where it was noticed.
            context = f"{context} that starts on line {cm.line + 1}:"
        msg = " ".join(str(x) for x in (context, e.problem) if x)
        result.diagnostics.append(Diagnostic(dx.YAML_SYNTAX, Severity.ERROR, f"invalid YAML: {msg}", file=filename, line=line))
        result.unparsed = True
        return result
    except Exception as e:  # ruamel raises a few unmarked errors (e.g. duplicate keys)
        result.diagnostics.append(Diagnostic(dx.YAML_SYNTAX, Severity.ERROR, f"invalid YAML: {e}", file=filename))
        result.unparsed = True
        return result
    for doc in _unpack_lists(docs, filename, result.diagnostics):
        res, diags = load_document(doc, filename, default_namespace, keep_unsupported, keep_invalid=keep_invalid)
        result.diagnostics.extend(diags)
        if res is not None:
            result.resources.append(res)
    return result


def _line(node: Any) -> int | None:
    if isinstance(node, Located):
        return int(node.node.start_mark.line) + 1
    lc = getattr(node, "lc", None)
    return lc.line + 1 if lc is not None and lc.line is not None else None


def locate(root: Any, path: tuple[str | int, ...]) -> int | None:
    """The 1-based line of the deepest part of ``path`` present in the parsed document."""
    if isinstance(root, Located):
        return locate_node(root.node, path)
    node = root
    line = _line(root)
    for part in path:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def field_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_plain(node: Any) -> Any:
    """Plain Python data: ruamel's round-trip scalars (block strings, hex ints, anchored booleans,
    timestamps) are subclasses a safe YAML dumper cannot write, so the store could not save them.
    Values of the plain types themselves (all of libyaml's, most of ruamel's) are taken as they
    are, without a call: 30,000 documents have a million of them."""
    if isinstance(node, dict):
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [v if type(v) in _PLAIN else to_plain(v) for v in node]
    if isinstance(node, (bool, ScalarBoolean)):
        return bool(node)
    for plain in (str, int, float):
        if isinstance(node, plain):
            return plain(node)
    if isinstance(node, datetime.datetime) and type(node) is not datetime.datetime:
        return datetime.datetime(node.year, node.month, node.day, node.hour, node.minute, node.second,
                                 node.microsecond, node.tzinfo)
    return node


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__


def _message(etype: str, msg: str, loc: tuple[str | int, ...], value: Any, ctx: dict[str, Any]) -> str:
    """pydantic's message, where it is unclear, in the words of a YAML user."""
    name = str(loc[-1]) if loc and isinstance(loc[-1], str) else "this item"
    if etype in ("model_type", "dict_type", "model_attributes_type"):
        if value is None:
            return f"{name} must not be empty"
        return f"{name} must be a mapping of fields (key: value), not {_describe(value)}"
    if etype == "list_type":
        if value is None:
            return f"{name} must not be empty: list at least one entry"
        return f"{name} must be a list (YAML '- item' lines or [a, b]), not {_describe(value)}"
    if etype == "too_short" and ctx.get("min_length") == 1:
        return f"{name} must list at least one entry"
    if etype == "string_too_short" and ctx.get("min_length") == 1:
        return f"{name} must not be empty"
    if etype == "string_type":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"must be a string, not {_describe(value)}: quote it, like \"{value}\""
        if value is None:
            return f"{name} must not be empty"
        return f"must be a string, not {_describe(value)}"
    if etype == "bool_type" or etype == "bool_parsing":
        return "must be true or false"
    return msg


def pydantic_diagnostics(err: ValidationError, doc: Any, base: tuple[str | int, ...], filename: str,
                         ref: str | None) -> list[Diagnostic]:
    """Pydantic's errors as exitgate's: unknown field EG0004, missing EG0003, invalid EG0005,
    each with its line in ``doc`` and its field's path."""
    out = []
    for e in err.errors():
        loc = base + tuple(p for p in e["loc"] if isinstance(p, (str, int)))
        etype = e["type"]
        # Pydantic reports a failed model validator at the model's own path with the message.
        msg = e["msg"].removeprefix("Value error, ")
        if etype == "missing":
            code, msg = dx.MISSING_FIELD, f"required field {loc[-1]!r} is missing"
        elif etype == "extra_forbidden":
            code, msg = dx.UNKNOWN_FIELD, f"unknown field {loc[-1]!r}"
        else:
            code = dx.INVALID_VALUE
            msg = _message(etype, msg, loc, e.get("input"), dict(e.get("ctx") or {}))
        out.append(Diagnostic(code, Severity.ERROR, msg, file=filename, line=locate(doc, loc), resource=ref, field=field_path(loc)))
    return out


def _unpack_lists(docs: list[Any], filename: str, diagnostics: list[Diagnostic]) -> Iterable[Any]:
    """Each document, and each item of a ``v1 List`` in its place (what ``kubectl get -o yaml``
    prints for several objects), with its own lines."""
    for doc in docs:
        if doc is None:
            continue
        if not (isinstance(doc, dict) and doc.get("kind") == "List" and str(doc.get("apiVersion")) == "v1"):
            yield doc
            continue
        items = doc.get("items")
        if not isinstance(items, list):
            diagnostics.append(Diagnostic(dx.MISSING_FIELD if items is None else dx.INVALID_VALUE, Severity.ERROR,
                                          "a List holds its objects under items", file=filename,
                                          line=locate(doc, ("items",)), resource="List", field="items"))
            continue
        for i, item in enumerate(items):
            if isinstance(doc, Located) and isinstance(item, dict):
                # The item's own node, so its diagnostics name its lines.
                sub = Located(item)
                sub.node = _item_node(doc.node, i)
                item = sub
            yield item


def _item_node(root: Any, index: int) -> Any:
    for key, value in root.value:
        if getattr(key, "value", None) == "items":
            return value.value[index]
    raise KeyError("items")


def _load_checked(doc: Any, filename: str, default_namespace: str) -> tuple[Resource | None, list[Diagnostic]]:
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if not isinstance(kind, str) or not (kind in TOP_LEVEL_MODELS or kind in SPEC_MODELS):
        return load_document(doc, filename, default_namespace)  # says what is wrong
    try:
        meta = ObjectMeta.model_validate(doc["metadata"])
        body = doc["spec"] if kind in SPEC_MODELS else {k: v for k, v in doc.items()
                                                         if k not in ("apiVersion", "kind", "metadata")}
        model = TOP_LEVEL_MODELS[kind][1] if kind in TOP_LEVEL_MODELS else SPEC_MODELS[kind][2]
        spec = model.model_validate(body, context=STORED)
    except (ValidationError, KeyError, TypeError):
        return load_document(doc, filename, default_namespace)
    namespace = "" if kind in CLUSTER_SCOPED else meta.namespace or default_namespace
    if namespace:
        doc["metadata"]["namespace"] = namespace
    return Resource(str(doc["apiVersion"]), kind, namespace, meta.name, spec, doc, Source(filename, 1)), []


def _issue_diags(spec: Spec, where: Where, doc: Any, base: tuple[str | int, ...], filename: str,
                 ref: str) -> list[Diagnostic]:
    return [Diagnostic(i.code, i.severity, i.message, file=filename, line=locate(doc, i.path), resource=ref,
                       field=field_path(i.path))
            for i in find_issues(spec, where, base)]


def _served(kind: str, group: str, versions: tuple[str, ...], api_version: str, doc: Any, filename: str,
            ref: str) -> Diagnostic | None:
    g, _, version = api_version.rpartition("/")
    if g == group and version in versions:
        return None
    return Diagnostic(dx.UNKNOWN_KIND, Severity.ERROR, f"{kind} is served as {group}/{{{','.join(versions)}}}, "
                      f"not {api_version}", file=filename, line=locate(doc, ("apiVersion",)), resource=ref,
                      field="apiVersion")


def _dry_run_diags(kind: str, meta: ObjectMeta, doc: Any, filename: str, ref: str) -> list[Diagnostic]:
    """Istio's ``istio.io/dry-run`` annotation: AuthorizationPolicy (ALLOW or DENY) only."""
    value = (meta.annotations or {}).get(DRY_RUN_ANNOTATION)
    if value is None:
        return []
    at = ("metadata", "annotations", DRY_RUN_ANNOTATION)
    problem = None
    if kind != "AuthorizationPolicy":
        problem = f"the {DRY_RUN_ANNOTATION} annotation is only for AuthorizationPolicy; remove it"
    else:
        spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
        action = str(spec.get("action") or "ALLOW")
        if action not in ("ALLOW", "DENY"):
            problem = f"the {DRY_RUN_ANNOTATION} annotation works only with action ALLOW or DENY, not {action}"
        elif value not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
            problem = f"the {DRY_RUN_ANNOTATION} annotation must be \"true\" or \"false\", not {value!r}"
    if problem is None:
        return []
    return [Diagnostic(dx.INVALID_VALUE, Severity.ERROR, problem, file=filename, line=locate(doc, at),
                       resource=ref, field=field_path(at))]


def load_document(doc: Any, filename: str, default_namespace: str = "default",
                  keep_unsupported: bool = False, checked: bool = False,
                  keep_invalid: bool = False) -> tuple[Resource | None, list[Diagnostic]]:
    """One document as a typed resource, or the diagnostics that refuse it. ``checked``: the
    document passed this function before (the store holds only such documents), so only the
    models are built, not the rules run again (a third of the time at 30,000 documents), nor
    the field checks (``base.STORED``); a value of the wrong type still fails."""
    if checked:
        return _load_checked(doc, filename, default_namespace)
    line = _line(doc)
    if not isinstance(doc, dict):
        return None, [Diagnostic(dx.YAML_SYNTAX, Severity.ERROR, "a resource must be a YAML mapping", file=filename, line=line)]
    diags: list[Diagnostic] = []
    for key in ("apiVersion", "kind", "metadata"):
        if key not in doc:
            diags.append(Diagnostic(dx.MISSING_FIELD, Severity.ERROR, f"required field {key!r} is missing", file=filename, line=line, field=key))
    if diags:
        return None, diags
    api_version, kind = str(doc["apiVersion"]), str(doc["kind"])
    ref_name = doc["metadata"].get("name") if isinstance(doc["metadata"], dict) else None
    ref = f"{kind} {ref_name}" if ref_name else kind
    if kind in TOP_LEVEL_MODELS:
        served = TOP_LEVEL_MODELS[kind][0]
        if api_version != served:
            return None, [Diagnostic(dx.UNKNOWN_KIND, Severity.ERROR, f"{kind} is served as {served}, not {api_version}",
                                     file=filename, line=locate(doc, ("apiVersion",)), resource=ref, field="apiVersion")]
    elif kind in SPEC_MODELS:
        group, versions, _ = SPEC_MODELS[kind]
        wrong = _served(kind, group, versions, api_version, doc, filename, ref)
        if wrong is not None:
            return None, [wrong]
    elif kind in KNOWN_UNSUPPORTED_KINDS:
        return None, [Diagnostic(dx.UNSUPPORTED, Severity.ERROR, f"kind {kind} is not supported by exitgate yet",
                                 file=filename, line=locate(doc, ("kind",)), resource=ref, field="kind")]
    else:
        return None, [Diagnostic(dx.UNKNOWN_KIND, Severity.ERROR,
                                 f"unknown kind {kind!r} (supported: {', '.join(sorted([*SPEC_MODELS, *TOP_LEVEL_MODELS]))})",
                                 file=filename, line=locate(doc, ("kind",)), resource=ref, field="kind")]
    try:
        meta = ObjectMeta.model_validate(doc["metadata"])
    except ValidationError as e:
        return None, pydantic_diagnostics(e, doc, ("metadata",), filename, ref)
    namespace = "" if kind in CLUSTER_SCOPED else meta.namespace or default_namespace
    ref = f"{kind} {namespace}/{meta.name}" if namespace else f"{kind} {meta.name}"
    if kind in CLUSTER_SCOPED and meta.namespace:
        # kubectl drops it; saying so keeps a misplaced file from looking namespaced.
        diags.append(Diagnostic(dx.INVALID_VALUE, Severity.WARNING, f"a {kind} has no namespace; "
                                f"metadata.namespace {meta.namespace!r} is ignored", file=filename,
                                line=locate(doc, ("metadata", "namespace")), resource=ref, field="metadata.namespace"))
    name_rules = ((meta.name, "metadata.name"),) if kind in CLUSTER_SCOPED else \
        ((meta.name, "metadata.name"), (namespace, "metadata.namespace"))
    for value, fld in name_rules:
        pattern = DNS1123_LABEL if fld.endswith("namespace") else DNS1123_SUBDOMAIN
        if not pattern.match(value) or len(value) > (63 if fld.endswith("namespace") else 253):
            diags.append(Diagnostic(dx.INVALID_VALUE, Severity.ERROR,
                                    f"{value!r} is not a valid name (lower case letters, digits, '-' and '.')",
                                    file=filename, line=locate(doc, tuple(fld.split("."))), resource=ref, field=fld))
        elif fld == "metadata.name" and kind == "Namespace" and not DNS1123_LABEL.match(value):
            diags.append(Diagnostic(dx.INVALID_VALUE, Severity.ERROR,
                                    f"{value!r} is not a valid Namespace name: lower case letters, digits and '-', "
                                    f"at most 63, no dots", file=filename, line=locate(doc, ("metadata", "name")),
                                    resource=ref, field=fld))
        elif fld == "metadata.name" and kind == "Service" and service_name_problem(value):
            diags.append(Diagnostic(dx.INVALID_VALUE, Severity.ERROR, str(service_name_problem(value)),
                                    file=filename, line=locate(doc, ("metadata", "name")), resource=ref, field=fld))
        elif kind == "Gateway" and fld == "metadata.name" and not DNS1123_LABEL.match(value):
            # Istio: VirtualServices name a Gateway as namespace/name, so the name has no dots.
            diags.append(Diagnostic(dx.INVALID_VALUE, Severity.ERROR,
                                    f"{value!r} is not a valid Gateway name: lower case letters, digits and '-', "
                                    f"no dots", file=filename, line=locate(doc, ("metadata", "name")), resource=ref,
                                    field=fld))
    diags.extend(_dry_run_diags(kind, meta, doc, filename, ref))
    if kind in TOP_LEVEL_MODELS:
        # A Secret's, a ConfigMap's, a Deployment's fields are top-level, not under spec.
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        try:
            spec: Spec = TOP_LEVEL_MODELS[kind][1].model_validate(body)
        except ValidationError as e:
            return None, diags + pydantic_diagnostics(e, doc, (), filename, ref)
        diags.extend(_issue_diags(spec, Where(namespace), doc, (), filename, ref))
        if isinstance(spec, ConfigMapSpec) and (namespace, meta.name) == MESH_CONFIGMAP:
            diags += [Diagnostic(i.code, i.severity, i.message, file=filename, line=locate(doc, i.path),
                                 resource=ref, field=field_path(i.path)) for i in spec.mesh_issues()]
        # Other ConfigMaps (an nginx.conf of Istio's tasks) are kept as Kubernetes keeps them; only
        # the mesh config is read (``apply`` says so).
        if keep_unsupported and all(d.code == dx.UNSUPPORTED for d in diags if d.is_error):
            diags = [replace(d, severity=Severity.WARNING) if d.code == dx.UNSUPPORTED else d for d in diags]
        if dx.has_errors(diags) and not keep_invalid:
            return None, diags
        raw = to_plain(doc)
        if namespace:
            raw["metadata"]["namespace"] = namespace
        else:
            raw["metadata"].pop("namespace", None)
        if kind in KUBE_MODELS:
            raw.pop("status", None)  # the cluster's account of the object, not configuration
        return Resource(api_version, kind, namespace, meta.name, spec, raw, Source(filename, line or 1)), diags
    extra = set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"}
    for k in sorted(extra):
        diags.append(Diagnostic(dx.UNKNOWN_FIELD, Severity.ERROR, f"unknown field {k!r}", file=filename,
                                line=locate(doc, (k,)), resource=ref, field=k))
    if "spec" not in doc:
        diags.append(Diagnostic(dx.MISSING_FIELD, Severity.ERROR, "required field 'spec' is missing", file=filename, line=line, resource=ref, field="spec"))
        if not keep_invalid:
            return None, diags
    model = SPEC_MODELS[kind][2]
    try:
        # Analysis reads a resource without a spec as an empty one, as Istio's does.
        spec = model.model_validate(doc["spec"] if "spec" in doc else {})
    except ValidationError as e:
        diags += pydantic_diagnostics(e, doc, ("spec",), filename, ref)
        return None, diags
    diags.extend(_issue_diags(spec, Where(namespace), doc, ("spec",), filename, ref))
    for path, message in find_unsupported(spec, ("spec",)):
        diags.append(Diagnostic(dx.UNSUPPORTED, Severity.ERROR, message, file=filename, line=locate(doc, path),
                                resource=ref, field=field_path(path)))
    if keep_unsupported and all(d.code == dx.UNSUPPORTED for d in diags if d.is_error):
        diags = [replace(d, severity=Severity.WARNING) if d.code == dx.UNSUPPORTED else d for d in diags]
    if dx.has_errors(diags) and not keep_invalid:
        return None, diags
    raw = to_plain(doc)
    raw.pop("status", None)
    raw["metadata"]["namespace"] = namespace
    return Resource(api_version, kind, namespace, meta.name, spec, raw, Source(filename, line or 1)), diags
