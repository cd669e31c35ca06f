"""kubectl's ``create namespace`` and ``create configmap`` (the tasks' ``kubectl create namespace
mesh-external`` and nginx.conf ConfigMap), and ``--from-literal`` as Secrets share it; ``create
secret`` is in ``secrets``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer

from exitgate.api.loader import load_document
from exitgate.cli.common import StateOpt, fail, state
from exitgate.store import Store


def literals(specs: list[str]) -> dict[str, str]:
    """kubectl's ``--from-literal=key=value``, repeatable."""
    out: dict[str, str] = {}
    for lit in specs:
        key, sep, value = lit.partition("=")
        if not sep:
            raise fail(f"--from-literal {lit!r}: expected key=value")
        out[key] = value
    return out


def _create(doc: dict[str, Any], plural: str, state_dir: Path | None) -> None:
    """``create KIND``: the object, refused as kubectl refuses it when it exists already."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    resource, diags = load_document(doc, f"exitgate create {kind.lower()}")
    for d in diags:
        typer.echo(str(d), err=True)
    if resource is None:
        raise typer.Exit(1)
    store = Store(state(state_dir).root)
    if any(r.key == resource.key for r in store.load().resources):
        raise fail(f'{plural} "{name}" already exists')
    result = store.apply([resource])
    if not result.ok:
        raise fail("; ".join(map(str, result.diagnostics)))
    typer.echo(f"{kind.lower()}/{name} created")


def add_create_verbs(create: typer.Typer) -> None:
    """``create namespace NAME``, as kubectl's (the docs' ``kubectl create namespace
    mesh-external``): a Namespace object, whose labels then decide injection as in Istio."""

    def create_namespace(name: str, state_dir: StateOpt = None) -> None:
        """A Namespace (no labels: add istio-injection=enabled with ``label`` for Istio's sidecars)."""
        _create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, "namespaces", state_dir)

    create.command("namespace")(create_namespace)
    create.command("ns", hidden=True)(create_namespace)

    @create.command("configmap")
    def create_configmap(
        name: str,
        from_file: Annotated[list[str], typer.Option("--from-file", help="[key=]path (a file or a directory), repeatable")] = [],  # noqa: B006
        from_literal: Annotated[list[str], typer.Option("--from-literal", help="key=value, repeatable")] = [],  # noqa: B006
        namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
        state_dir: StateOpt = None,
    ) -> None:
        """A ConfigMap from files or literals, as kubectl's (the tasks' nginx.conf). exitgate reads
        only Istio's mesh config (istio in istio-system); others are kept, as Kubernetes keeps them."""
        data: dict[str, str] = {}
        binary: dict[str, str] = {}
        for spec in from_file:
            key, sep, path = spec.partition("=")
            if not sep:
                key, path = "", spec
            source = Path(path)
            files = sorted(f for f in source.iterdir() if f.is_file()) if source.is_dir() else [source]
            for f in files:
                try:
                    content = f.read_bytes()
                except OSError as e:
                    raise fail(f"--from-file {spec}: {e.strerror}") from None
                k = key if key and not source.is_dir() else f.name
                try:
                    data[k] = content.decode()
                except UnicodeDecodeError:
                    binary[k] = base64.b64encode(content).decode()
        data.update(literals(from_literal))
        doc: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
        if data:
            doc["data"] = data
        if binary:
            doc["binaryData"] = binary
        _create(doc, "configmaps", state_dir)
