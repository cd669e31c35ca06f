"""``exitgate create secret`` (kubectl's) and ``exitgate proxy-config secret`` (istioctl's).

Secret data is sensitive: ``create`` reads the files and stores them base64 in the 0600 store;
nothing here prints a key. ``proxy-config secret`` reads what a running Envoy holds from its
admin endpoint (Envoy redacts private keys there) and shows each certificate's validity.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from exitgate.api.loader import load_document
from exitgate.cli.common import StateOpt, state
from exitgate.proxyconfig import tabwrite
from exitgate.runtime import StateDir
from exitgate.store import Store

def _state(state_dir: Path | None) -> StateDir:
    return state(state_dir)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"error: {message}", style="red", markup=False)
    return typer.Exit(1)


def _apply_secret(doc: dict[str, Any], state_dir: Path | None, origin: str) -> None:
    resource, diags = load_document(doc, origin)
    for d in diags:
        Console(stderr=True, highlight=False).print(str(d), style="red", markup=False)
    if resource is None:
        raise typer.Exit(1)
    result = Store(_state(state_dir).root).apply([resource])
    if not result.ok:
        raise _fail("; ".join(map(str, result.diagnostics)))
    for r, what in result.changes:
        typer.echo(f"secret/{r.name} {what}")


def _read_files(specs: list[str]) -> dict[str, str]:
    """kubectl's ``--from-file=[key=]path``: the key defaults to the file's name."""
    data: dict[str, str] = {}
    for spec in specs:
        key, sep, path = spec.partition("=")
        if not sep:
            key, path = Path(spec).name, spec
        try:
            data[key] = base64.b64encode(Path(path).read_bytes()).decode()
        except OSError as e:
            raise _fail(f"--from-file {spec}: {e.strerror}") from None
    return data


def register(app: typer.Typer) -> None:
    create = typer.Typer(help="Create a Secret from files, or a Namespace (like kubectl create).", no_args_is_help=True)
    secret = typer.Typer(help="Create a Secret.", no_args_is_help=True)
    create.add_typer(secret, name="secret")
    app.add_typer(create, name="create")
    from exitgate.cli.create import add_create_verbs, literals

    add_create_verbs(create)

    @secret.command("generic")
    def create_generic(
        name: str,
        from_file: Annotated[list[str], typer.Option("--from-file", help="[key=]path, repeatable")] = [],  # noqa: B006
        from_literal: Annotated[list[str], typer.Option("--from-literal", help="key=value, repeatable")] = [],  # noqa: B006
        namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
        state_dir: StateOpt = None,
    ) -> None:
        """A generic (Opaque) Secret, e.g. a client credential for credentialName:
        --from-file=tls.key=client.key --from-file=tls.crt=client.crt --from-file=ca.crt=ca.crt"""
        data = _read_files(from_file)
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in literals(from_literal).items()})
        if not data:
            raise _fail("give at least one --from-file or --from-literal")
        _apply_secret({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                       "type": "Opaque", "data": data}, state_dir, "exitgate create secret generic")

    @secret.command("tls")
    def create_tls(
        name: str,
        cert: Annotated[Path, typer.Option("--cert", help="PEM certificate (chain)")],
        key: Annotated[Path, typer.Option("--key", help="PEM private key")],
        namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
        state_dir: StateOpt = None,
    ) -> None:
        """A kubernetes.io/tls Secret with tls.crt and tls.key."""
        data = _read_files([f"tls.crt={cert}", f"tls.key={key}"])
        _apply_secret({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                       "type": "kubernetes.io/tls", "data": data}, state_dir, "exitgate create secret tls")

    proxy_config = typer.Typer(help="What a running proxy holds (like istioctl proxy-config).", no_args_is_help=True)
    app.add_typer(proxy_config, name="proxy-config")

    @proxy_config.command("secret")
    def proxy_config_secret(
        proxy: Annotated[str, typer.Argument(help="proxy name (or name.namespace)")],
        output: Annotated[str, typer.Option("-o", "--output", help="table (default) or json")] = "table",
        state_dir: StateOpt = None,
    ) -> None:
        """The secrets a proxy holds: certificates, CAs, validity, serial numbers, expiry."""
        info = _state(state_dir).read_runtime()
        rec = info.proxy(proxy) if info else None
        if rec is None:
            raise _fail(f'no running proxy "{proxy}" (is `exitgate up` running?)')
        try:
            dump = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{rec.admin_port}/config_dump?resource=dynamic_active_secrets", timeout=5).read())
            warming = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{rec.admin_port}/config_dump?resource=dynamic_warming_secrets", timeout=5).read())
        except OSError as e:
            raise _fail(f"cannot reach {proxy}'s admin endpoint: {e}") from None
        rows = secret_rows(dump, "ACTIVE", datetime.now(timezone.utc)) + secret_rows(warming, "WARMING", datetime.now(timezone.utc))
        if output == "json":
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            typer.echo("No active or warming secrets found.")
            return
        headers = ("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE")
        typer.echo(tabwrite(headers, [[r[c] for c in ("name", "type", "status", "valid", "serial", "not_after", "not_before")]
                                      for r in rows]), nl=False)


def _fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def secret_rows(dump: dict[str, Any], status: str, now: datetime) -> list[dict[str, str]]:
    """istioctl's columns from an Envoy secrets config dump."""
    rows = []
    for config in dump.get("configs", []):
        secret = config.get("secret", {})
        name = config.get("name") or secret.get("name", "")
        if "tls_certificate" in secret:
            kind, pem_b64 = "Cert Chain", secret["tls_certificate"].get("certificate_chain", {}).get("inline_bytes", "")
        else:
            kind, pem_b64 = "CA", secret.get("validation_context", {}).get("trusted_ca", {}).get("inline_bytes", "")
        row = {"name": name, "type": kind, "status": status, "valid": "false", "serial": "", "not_after": "", "not_before": ""}
        # Imported here, not at start: cryptography costs every other command a tenth of a second.
        from cryptography import x509

        from exitgate.ca.certs import cert_info

        try:
            pem = base64.b64decode(pem_b64)
            info = cert_info(pem)
            # A CA bundle: the earliest expiry is the one to watch.
            bundle = x509.load_pem_x509_certificates(pem)
            not_after = min(c.not_valid_after_utc for c in bundle)
            row.update(valid=str(info.not_before <= now <= not_after).lower(), serial=info.serial,
                       not_after=_fmt(not_after), not_before=_fmt(info.not_before))
        except ValueError:
            pass
        rows.append(row)
    return sorted(rows, key=lambda r: r["name"])
