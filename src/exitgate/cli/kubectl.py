"""kubectl's reading and deleting verbs over the store: ``get KIND [NAME...]`` with kubectl's
columns and ``-o json|yaml|wide|name|jsonpath=...``, ``delete KIND NAME...`` (or ``-f``), and
``describe KIND NAME``, for every kind exitgate keeps."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from exitgate.api.loader import CLUSTER_SCOPED, SPEC_MODELS, TOP_LEVEL_MODELS, load_document, load_paths
from exitgate.api.resources import Resource
from exitgate.cli.common import StateOpt, fail, selector_matches, selector_problem, state
from exitgate.cli.mesh_objects import mesh_services, proxy_pods
from exitgate.proxyconfig import tabwrite
from exitgate.store import Store

# kubectl's names for each kind: singular, plural, short names.
KIND_ALIASES = {
    "serviceentry": "ServiceEntry", "serviceentries": "ServiceEntry", "se": "ServiceEntry",
    "gateway": "Gateway", "gateways": "Gateway", "gw": "Gateway",
    "virtualservice": "VirtualService", "virtualservices": "VirtualService", "vs": "VirtualService",
    "destinationrule": "DestinationRule", "destinationrules": "DestinationRule", "dr": "DestinationRule",
    "sidecar": "Sidecar", "sidecars": "Sidecar",
    "authorizationpolicy": "AuthorizationPolicy", "authorizationpolicies": "AuthorizationPolicy", "ap": "AuthorizationPolicy",
    "secret": "Secret", "secrets": "Secret",
    "configmap": "ConfigMap", "configmaps": "ConfigMap", "cm": "ConfigMap",
    "namespace": "Namespace", "namespaces": "Namespace", "ns": "Namespace",
    "serviceaccount": "ServiceAccount", "serviceaccounts": "ServiceAccount", "sa": "ServiceAccount",
    "service": "Service", "services": "Service", "svc": "Service",
    "deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
    "pod": "Pod", "pods": "Pod", "po": "Pod",
}
GROUP = "networking.istio.io"
OUTPUTS = ("json", "jsonpath", "name", "wide", "yaml")


def kind_of(text: str) -> str | None:
    """``se``, ``serviceentries``, ``serviceentry.networking.istio.io`` -> ``ServiceEntry``."""
    base = text.lower().split(".", 1)[0]
    return KIND_ALIASES.get(base)


def kind_name(kind: str) -> str:
    """kubectl's name for a kind: ``secret``, ``serviceentry.networking.istio.io``."""
    if kind in TOP_LEVEL_MODELS:
        version = TOP_LEVEL_MODELS[kind][0]
        return kind.lower() if "/" not in version else f"{kind.lower()}.{version.split('/')[0]}"
    return f"{kind.lower()}.{SPEC_MODELS[kind][0] if kind in SPEC_MODELS else GROUP}"


class _KubectlDumper(yaml.SafeDumper):
    """kubectl's YAML: a string of several lines as a literal block (``nginx.conf: |``)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\t\r") and not value.endswith(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_KubectlDumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_KubectlDumper, sort_keys=False)


def _array(value: Any) -> str:
    # A CRD's printer column of an array reads as JSON, as kubectl prints it.
    return json.dumps(value, separators=(",", ":")) if value else ""


def columns(kind: str) -> tuple[str, ...]:
    """The columns of Istio's CRDs (``additionalPrinterColumns``) and of Secret and ConfigMap."""
    return {"ServiceEntry": ("NAME", "HOSTS", "LOCATION", "RESOLUTION", "AGE"),
            "VirtualService": ("NAME", "GATEWAYS", "HOSTS", "AGE"),
            "DestinationRule": ("NAME", "HOST", "AGE"),
            "AuthorizationPolicy": ("NAME", "ACTION", "AGE"),
            "Secret": ("NAME", "TYPE", "DATA", "AGE"),
            "ConfigMap": ("NAME", "DATA", "AGE"),
            "ServiceAccount": ("NAME", "SECRETS", "AGE"),
            "Namespace": ("NAME", "STATUS", "AGE"),
            "Service": ("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"),
            "Deployment": ("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"),
            "Pod": ("NAME", "READY", "STATUS", "RESTARTS", "AGE")}.get(kind, ("NAME", "AGE"))


def row(r: Resource) -> list[str]:
    spec = r.raw.get("spec", {}) or {}
    # The store keeps no creation time: AGE reads as kubectl shows a missing one.
    age = "<unknown>"
    if r.kind == "ServiceEntry":
        return [r.name, _array(spec.get("hosts")), spec.get("location", ""), spec.get("resolution", ""), age]
    if r.kind == "VirtualService":
        return [r.name, _array(spec.get("gateways")), _array(spec.get("hosts")), age]
    if r.kind == "DestinationRule":
        return [r.name, str(spec.get("host", "")), age]
    if r.kind == "AuthorizationPolicy":
        return [r.name, str(spec.get("action", "")), age]
    if r.kind == "Secret":
        # Like kubectl, a Secret's data is never shown: only its type and key count.
        return [r.name, str(r.raw.get("type", "Opaque")), str(len(r.raw.get("data", {}) or {}) + len(r.raw.get("stringData", {}) or {})), age]
    if r.kind == "ConfigMap":
        return [r.name, str(len(r.raw.get("data", {}) or {})), age]
    if r.kind == "ServiceAccount":
        return [r.name, str(len(r.raw.get("secrets") or [])), age]
    if r.kind == "Namespace":
        return [r.name, "Active", age]
    if r.kind == "Service":
        ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
        return [r.name, str(spec.get("type", "ClusterIP")), str(spec.get("clusterIP", "<none>")), "<none>",
                ports or "<none>", age]
    if r.kind == "Pod":
        status = r.raw.get("status") or {}
        ready = sum(1 for c in status.get("containerStatuses") or [] if c.get("ready"))
        total = len((r.raw.get("spec") or {}).get("containers") or [])
        return [r.name, f"{ready}/{total}", str(status.get("phase", "Pending")), "0", age]
    if r.kind == "Deployment":
        # exitgate runs no pods: the counts are the replicas asked for, none reported ready.
        replicas = spec.get("replicas", 1)
        return [r.name, f"0/{replicas}", "0", "0", age]
    return [r.name, age]


# -- jsonpath (kubectl's template subset: fields, [i], [*], ranges, literals) -------------------

_TOKEN = re.compile(r"\{([^{}]*)\}")


def _descend(value: Any, field: str, out: list[Any]) -> None:
    """JSONPath's recursive descent (``..field``): every ``field`` at any depth, in document order."""
    if isinstance(value, dict):
        if field in value:
            out.append(value[field])
        for child in value.values():
            _descend(child, field, out)
    elif isinstance(value, list):
        for child in value:
            _descend(child, field, out)


def _select(values: list[Any], path: str) -> list[Any]:
    # A key with dots in it is written escaped, as kubectl's: {.data.nginx\.conf}.
    for part in re.findall(r"(\.\.?)((?:\\\.|[^.\[\]])+)|\[(\*|-?\d+)\]", path):
        dots, field, index = part
        field = field.replace("\\.", ".")
        out: list[Any] = []
        for v in values:
            if field and dots == "..":
                _descend(v, field, out)
            elif field:
                if isinstance(v, dict) and field in v:
                    out.append(v[field])
            elif index == "*":
                if isinstance(v, list):
                    out += v
                elif isinstance(v, dict):
                    out += list(v.values())
            elif isinstance(v, list) and -len(v) <= int(index) < len(v):
                out.append(v[int(index)])
        values = out
    return values


def _show(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def jsonpath(template: str, data: Any) -> str:
    """Evaluate kubectl's ``-o jsonpath=`` template against ``data``."""
    template = template.strip()
    if template.startswith("'") and template.endswith("'"):
        template = template[1:-1]
    if not template.startswith("{") and "{" not in template:
        template = "{" + template + "}"
    pieces: list[tuple[str, str]] = []  # ("text", s) | ("expr", path) | ("range", path) | ("end", "")
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            pieces.append(("text", template[pos:m.start()]))
        expr = m.group(1).strip()
        if expr.startswith("range "):
            pieces.append(("range", expr[6:].strip()))
        elif expr == "end":
            pieces.append(("end", ""))
        elif expr.startswith('"') and expr.endswith('"'):
            pieces.append(("text", json.loads(expr)))
        else:
            pieces.append(("expr", expr))
        pos = m.end()
    if pos < len(template):
        pieces.append(("text", template[pos:]))

    def run(items: list[tuple[str, str]], ctx: Any) -> str:
        out, i = [], 0
        while i < len(items):
            kind, value = items[i]
            if kind == "text":
                out.append(value)
            elif kind == "expr":
                path = value[1:] if value.startswith("$") else value
                out.append(" ".join(_show(v) for v in _select([ctx], path if path.startswith((".", "[")) else "." + path)))
            elif kind == "range":
                depth, j = 1, i + 1
                while j < len(items) and depth:
                    depth += {"range": 1, "end": -1}.get(items[j][0], 0)
                    j += 1
                body = items[i + 1:j - 1]
                path = value[1:] if value.startswith("$") else value
                for v in _select([ctx], path):
                    out.append(run(body, v))
                i = j - 1
            i += 1
        return "".join(out)

    return run(pieces, data)


def _list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def register(app: typer.Typer) -> None:
    @app.command()
    def get(kind: Annotated[str, typer.Argument(help="serviceentry|gateway|virtualservice|destinationrule|sidecar|"
                                                     "authorizationpolicy|secret|configmap|all (or their short names)")],
            names: Annotated[Optional[list[str]], typer.Argument()] = None,
            namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
            all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
            output: Annotated[str, typer.Option("-o", "--output", help="json|yaml|wide|name|jsonpath=TEMPLATE")] = "",
            selector: Annotated[Optional[str], typer.Option("-l", "--selector",
                                                            help="label selector: k=v, k!=v, k in (a,b), k notin (a,b), k, !k (comma-separated)")] = None,
            state_dir: StateOpt = None) -> None:
        """List applied resources, like kubectl get. Pods are the applied Pod objects and one pod
        for each proxy the mesh runs (its workload or gateway), with the labels it runs with."""
        # "all" leaves Secrets and ConfigMaps out, as kubectl's does.
        kinds = list(SPEC_MODELS) if kind.lower() == "all" else [k for k in [kind_of(kind)] if k]
        if not kinds:
            raise fail(f'the server doesn\'t have a resource type "{kind}"')
        fmt, _, template = output.partition("=")
        if fmt and fmt not in OUTPUTS:
            raise fail(f'unable to match a printer suitable for the output format "{output}", '
                       f"allowed formats are: {','.join(OUTPUTS)}")
        if fmt == "jsonpath" and not template:
            raise fail("template format specified but no template given")
        if selector is not None and (problem := selector_problem(selector)):
            raise fail(problem)
        st = state(state_dir)
        snap = Store(st.root).load()
        listed = (list(snap.resources) + (proxy_pods(st, snap.resources) if "Pod" in kinds else [])
                  + (mesh_services(st, snap.resources) if "Service" in kinds else []))
        # A cluster-scoped object (a Namespace) is in no namespace: -n does not filter it.
        found = [r for r in listed if r.kind in kinds
                 and (all_namespaces or r.namespace == namespace or r.kind in CLUSTER_SCOPED)
                 and (not names or r.name in names)
                 and (selector is None or selector_matches(selector, (r.raw.get("metadata") or {}).get("labels") or {}))]
        for n in names or []:
            if not any(r.name == n for r in found):
                typer.echo(f'Error from server (NotFound): {kind_name(kinds[0])} "{n}" not found', err=True)
        missing = bool(names) and len({r.name for r in found}) < len(set(names or []))
        docs = [r.raw for r in found]
        data: Any = docs[0] if names and len(names) == 1 and len(docs) == 1 else _list(docs)
        if fmt == "json":
            typer.echo(json.dumps(data, indent=4))
        elif fmt == "yaml":
            typer.echo(dump_yaml(data), nl=False)
        elif fmt == "name":
            for r in found:
                typer.echo(f"{kind_name(r.kind)}/{r.name}")
        elif fmt == "jsonpath":
            typer.echo(jsonpath(template, data), nl=False)
        elif not found:
            if not names:
                scoped = all_namespaces or all(k in CLUSTER_SCOPED for k in kinds)
                typer.echo("No resources found" + ("" if scoped else f" in {namespace} namespace") + ".", err=True)
        else:
            for i, k in enumerate(k for k in kinds if any(r.kind == k for r in found)):
                chosen = [r for r in found if r.kind == k]
                headers = columns(k)
                rows = [row(r) for r in chosen]
                if len(kinds) > 1:  # "get all" prefixes names with their kind, as kubectl does
                    rows = [[f"{kind_name(k)}/{x[0]}", *x[1:]] for x in rows]
                if all_namespaces and k not in CLUSTER_SCOPED:
                    headers = ("NAMESPACE", *headers)
                    rows = [[r.namespace, *x] for r, x in zip(chosen, rows)]
                typer.echo(("\n" if i else "") + tabwrite(headers, rows, padding=3), nl=False)
        if missing:
            raise typer.Exit(1)

    @app.command()
    def delete(kind: Annotated[Optional[str], typer.Argument(help="KIND, then the NAMEs to delete")] = None,
               names: Annotated[Optional[list[str]], typer.Argument()] = None,
               files: Annotated[Optional[list[Path]], typer.Option("-f", "--filename",
                                                                   help="File or directory naming what to delete.")] = None,
               namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
               state_dir: StateOpt = None) -> None:
        """Delete resources by kind and name (``delete secret NAME``) or those named in files."""
        keys: list[tuple[str, str, str]] = []
        if files:
            if kind:
                raise fail("give either -f or KIND NAME, not both")
            loaded = load_paths(files, default_namespace=namespace)
            for d in loaded.diagnostics:
                typer.echo(str(d), err=True)
            if not loaded.ok:
                raise fail("nothing was deleted")
            keys = [r.key for r in loaded.resources]
        else:
            k = kind_of(kind or "")
            if kind is None:
                raise fail("You must provide one or more resources by argument or filename.")
            if k is None:
                raise fail(f'the server doesn\'t have a resource type "{kind}"')
            if not names:
                raise fail("resource(s) were provided, but no name was specified")
            keys = [(k, "" if k in CLUSTER_SCOPED else namespace, n) for n in names]
        store = Store(state(state_dir).root)
        gone_namespaces = {name for kind_, _, name in keys if kind_ == "Namespace"}
        if gone_namespaces:
            # As Kubernetes: a Namespace goes with everything in it (kubectl names only the Namespace).
            keys += [r.key for r in store.load().resources if r.namespace in gone_namespaces and r.key not in keys]
        result = store.delete(keys)
        for r, _ in result.changes:
            if r.namespace in gone_namespaces:
                continue
            typer.echo(f'{kind_name(r.kind)} "{r.name}" deleted')
        for d in result.diagnostics:
            kind_, _, ref = (d.resource or "").partition(" ")
            ns_, _, name_ = ref.rpartition("/")
            # kubectl's words: the kind's name and the object's ('namespace "x" not found').
            typer.echo(f'Error from server (NotFound): {kind_name(kind_) if kind_ else "resource"} "{name_}" not found'
                       if kind_ in (*SPEC_MODELS, *TOP_LEVEL_MODELS) else
                       f"Error from server (NotFound): {d.resource} not found", err=True)
        if result.diagnostics:
            raise typer.Exit(1)

    @app.command()
    def label(kind: Annotated[str, typer.Argument(help="KIND (namespace, deployment, serviceentry, ...)")],
              name: Annotated[str, typer.Argument()],
              changes: Annotated[list[str], typer.Argument(help="KEY=VALUE to set, KEY- to remove")],
              overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a label's value")] = False,
              namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
              state_dir: StateOpt = None) -> None:
        """Set or remove labels, as kubectl label does (``label namespace default
        istio-injection=enabled``). A namespace exitgate has no object for gets one, since in
        Kubernetes every namespace exists."""
        k = kind_of(kind)
        if k is None:
            raise fail(f'the server doesn\'t have a resource type "{kind}"')
        ns = "" if k in CLUSTER_SCOPED else namespace
        store = Store(state(state_dir).root)
        found = next((r for r in store.load().resources if r.key == (k, ns, name)), None)
        if found is None and k != "Namespace":
            raise fail(f'{kind_name(k)} "{name}" not found')
        raw: dict[str, Any] = dict(found.raw) if found is not None else {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        meta: dict[str, Any] = dict(raw.get("metadata") or {})
        labels: dict[str, str] = dict(meta.get("labels") or {})
        for change in changes:
            if change.endswith("-") and "=" not in change:
                labels.pop(change[:-1], None)
                continue
            key, sep, value = change.partition("=")
            if not sep or not key:
                raise fail(f"invalid label spec: {change!r} (KEY=VALUE or KEY-)")
            if key in labels and labels[key] != value and not overwrite:
                raise fail(f"'{key}' already has a value ({labels[key]}), and --overwrite is false")
            labels[key] = value
        meta["labels"] = labels
        raw["metadata"] = meta
        resource, diags = load_document(raw, f"exitgate label {kind} {name}", default_namespace=namespace)
        for d in diags:
            typer.echo(str(d), err=True)
        if resource is None:
            raise fail("nothing was labeled")
        result = store.apply([resource])
        if not result.ok:
            raise fail("; ".join(map(str, result.diagnostics)))
        for r, what in result.changes:
            typer.echo(f"{kind_name(r.kind)}/{r.name} {'not labeled' if what == 'unchanged' else 'labeled'}")

    @app.command()
    def describe(kind: Annotated[str, typer.Argument()], name: Annotated[str, typer.Argument()],
                 namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
                 state_dir: StateOpt = None) -> None:
        """Show one resource in kubectl's describe layout."""
        k = kind_of(kind)
        if k is None:
            raise fail(f'the server doesn\'t have a resource type "{kind}"')
        snap = Store(state(state_dir).root).load()
        ns = "" if k in CLUSTER_SCOPED else namespace
        found = next((r for r in snap.resources if (r.kind, r.namespace, r.name) == (k, ns, name)), None)
        if found is None:
            raise fail(f'{kind_name(k)} "{name}" not found')
        typer.echo(describe_text(found), nl=False)


def _title(key: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).split())


def _describe_value(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                lines.append(f"{pad}{_title(k)}:")
                lines += _describe_value(v, indent + 1)
            else:
                lines.append(f"{pad}{_title(k)}:  {_show(v)}")
        return lines
    if isinstance(value, list):
        lines = []
        for v in value:
            if isinstance(v, dict):
                sub = _describe_value(v, indent + 1)
                lines += sub
            else:
                lines.append(f"{pad}{_show(v)}")
        return lines
    return [f"{pad}{_show(value)}"]


def describe_text(r: Resource) -> str:
    meta = r.raw.get("metadata", {}) or {}

    def pairs(d: dict[str, str] | None) -> str:
        return "\n              ".join(f"{k}={v}" for k, v in (d or {}).items()) or "<none>"

    lines = [f"Name:         {r.name}", f"Namespace:    {r.namespace}", f"Labels:       {pairs(meta.get('labels'))}",
             f"Annotations:  {pairs(meta.get('annotations'))}", f"API Version:  {r.api_version}", f"Kind:         {r.kind}"]
    if r.kind == "Secret":
        lines += ["", f"Type:  {r.raw.get('type', 'Opaque')}", "", "Data", "===="]
        # As kubectl: the sizes of the values, never the values.
        for key, value in sorted((r.raw.get("data") or {}).items()):
            lines.append(f"{key}:  {len(base64.b64decode(value))} bytes")
    else:
        for section in ("spec", "data"):
            if r.raw.get(section):
                lines.append(f"{_title(section)}:")
                lines += _describe_value(r.raw[section], 1)
    lines.append("Events:       <none>")
    return "\n".join(lines) + "\n"
