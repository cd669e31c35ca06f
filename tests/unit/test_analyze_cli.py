"""`exitgate analyze` as a user runs it, on a Typer app of its own (``register(app)``): istioctl's
text, JSON and YAML output, exit status 1 on errors only, the store with files on top."""

from __future__ import annotations

import base64
import json
import re
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from exitgate.analyze import ANALYZERS
from exitgate.api.loader import load_paths
from exitgate.cli.analyze import register
from exitgate.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tls-origination"


def make_app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:  # a second command, so Typer keeps "analyze" as a subcommand
        typer.echo("test")

    return app


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EXITGATE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def run(state: Path, *args: str) -> Result:
    return CliRunner().invoke(make_app(), ["analyze", *args, "--state-dir", str(state)])


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def broken_route(tmp_path: Path) -> Path:
    """The example's VirtualService with a typo in the gateway-side destination host."""
    text = (EXAMPLES / "03-virtualservice-and-tls-origination.yaml").read_text()
    fixed = text.replace("        host: edition.cnn.com\n", "        host: edition.cnn.comm\n", 1)
    assert fixed != text
    return write(tmp_path / "03-typo.yaml", fixed)


def istio_ca_warnings_only(output: str) -> bool:
    """Istio's own examples originate TLS without caCertificates, which istioctl warns about."""
    lines = output.splitlines()
    return bool(lines) and all(re.match(r"Warning \[IST012[89]\] \(DestinationRule ", ln) for ln in lines)


def test_clean_examples(state: Path) -> None:
    result = run(state, "-f", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    assert istio_ca_warnings_only(result.output), result.output
    assert "no caCertificates are set to validate server identity for host: edition.cnn.com" in result.output


def test_error_text_like_istioctl(state: Path, tmp_path: Path) -> None:
    typo = broken_route(tmp_path)
    result = run(state, "-f", str(EXAMPLES / "01-serviceentry.yaml"), "-f", str(EXAMPLES / "02-gateway-and-destinationrule.yaml"),
                 "-f", str(typo))
    assert result.exit_code == 1, result.output
    line = next(ln for ln in result.output.splitlines() if "IST0101" in ln)
    number = typo.read_text().splitlines().index("        host: edition.cnn.comm") + 1
    assert line == (f"Error [IST0101] (VirtualService default/direct-cnn-through-egress-gateway {typo}:{number}) "
                    f'Referenced host not found: "edition.cnn.comm"')


def test_json_output(state: Path, tmp_path: Path) -> None:
    typo = broken_route(tmp_path)
    result = run(state, "-f", str(EXAMPLES / "01-serviceentry.yaml"), "-f", str(EXAMPLES / "02-gateway-and-destinationrule.yaml"),
                 "-f", str(typo), "-o", "json")
    assert result.exit_code == 1
    items = json.loads(result.output)
    host = next(i for i in items if i["code"] == "IST0101")
    assert host["level"] == "Error"
    assert host["resource"] == "VirtualService default/direct-cnn-through-egress-gateway"
    assert host["field"] == "spec.http[1].route[0].destination.host"
    assert host["file"] == str(typo) and isinstance(host["line"], int)
    assert set(host) == {"code", "level", "message", "file", "line", "resource", "field"}


def test_json_and_yaml_when_clean(state: Path) -> None:
    assert {i["code"] for i in json.loads(run(state, "-f", str(EXAMPLES), "-o", "json").output)} == {"IST0129"}
    result = run(state, "-f", str(EXAMPLES), "-o", "yaml")
    assert result.exit_code == 0 and {i["code"] for i in yaml.safe_load(result.output)} == {"IST0129"}


def test_yaml_output(state: Path, tmp_path: Path) -> None:
    typo = broken_route(tmp_path)
    result = run(state, "-f", str(EXAMPLES / "01-serviceentry.yaml"), "-f", str(typo), "-o", "yaml")
    items = yaml.safe_load(result.output)
    assert result.exit_code == 1
    assert {i["code"] for i in items} >= {"IST0101"}


def test_warnings_only_exit_zero(state: Path, tmp_path: Path) -> None:
    extra = write(tmp_path / "unused-dr.yaml", """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata:
          name: nothing
        spec:
          host: nothing.example.com
        """)
    result = run(state, "-f", str(EXAMPLES), "-f", str(extra))
    assert result.exit_code == 0, result.output
    # Sorted by file: where the examples' IST0129 comes depends on the checkout's path.
    assert any(ln.startswith("Warning [IST0174] (DestinationRule default/nothing ") for ln in result.output.splitlines())


def test_load_errors_exit_one(state: Path, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: x}\nspec: [\n")
    result = run(state, "-f", str(bad))
    assert result.exit_code == 1
    assert "EG0001" in result.output and "(but 1 file could not be parsed)" in result.output


def test_what_loads_is_analyzed_when_another_document_does_not(state: Path, tmp_path: Path) -> None:
    """As istioctl: one bad document is reported, and the rest is still analyzed."""
    mixed = write(tmp_path / "mixed.yaml", textwrap.dedent("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: broken}
        spec:
          hosts: [a.example.com]
          http: [{route: [{destination: {host: a.example.com, port: {number: 99999}}}]}]
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: lonely}
        spec:
          host: nothing.example.com
        """))
    result = run(state, "-f", str(mixed))
    assert result.exit_code == 1
    assert "EG0005" in result.output  # the bad one, with its place
    assert any(ln.startswith("Warning [IST0174] (DestinationRule default/lonely ") for ln in result.output.splitlines())


def test_missing_file(state: Path, tmp_path: Path) -> None:
    result = run(state, "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "no such file" in result.output


def test_store_with_files_on_top(state: Path, tmp_path: Path) -> None:
    loaded = load_paths([EXAMPLES])
    assert Store(state).apply(loaded.resources).ok
    clean = run(state)
    assert clean.exit_code == 0
    assert istio_ca_warnings_only(clean.output), clean.output
    # The typo'd VirtualService replaces the stored one for this analysis only.
    typo = broken_route(tmp_path)
    result = run(state, "-f", str(typo), "-o", "json")
    assert result.exit_code == 1
    assert [i["file"] for i in json.loads(result.output) if i["code"] == "IST0101"] == [str(typo)]
    assert run(state).exit_code == 0
    # Without the store, the VirtualService alone references missing hosts.
    alone = run(state, "--no-use-store", "-f", str(typo), "-o", "json")
    assert {i["code"] for i in json.loads(alone.output)} >= {"IST0101"}


def test_store_diagnostics_point_into_the_snapshot(state: Path, tmp_path: Path) -> None:
    loaded = load_paths([EXAMPLES, broken_route(tmp_path)])
    resources = {r.key: r for r in loaded.resources}  # the typo'd VirtualService wins
    assert Store(state).apply(list(resources.values())).ok
    result = run(state, "-o", "json")
    item = next(i for i in json.loads(result.output) if i["code"] == "IST0101")
    snapshot = (state / "config.yaml").read_text().splitlines()
    assert item["file"] == str(state / "config.yaml")
    assert snapshot[item["line"] - 1].strip() == '"host": "edition.cnn.comm",'  # the field's own line


def test_mesh_option(state: Path, tmp_path: Path) -> None:
    mesh = write(tmp_path / "mesh.yaml", """
        gateways:
        - name: other-gateway
          namespace: istio-system
          labels: {istio: other}
          ports: [{port: 80, targetPort: 8080}]
        """)
    result = run(state, "-f", str(EXAMPLES), "--mesh", str(mesh), "-o", "json")
    assert result.exit_code == 1
    codes = {i["code"] for i in json.loads(result.output)}
    assert "IST0101" in codes  # the Gateway's selector (istio=egressgateway) matches no gateway now


def test_bad_mesh_file(state: Path, tmp_path: Path) -> None:
    mesh = write(tmp_path / "mesh.yaml", "gateways: 3\n")
    result = run(state, "-f", str(EXAMPLES), "--mesh", str(mesh))
    assert result.exit_code == 1


def test_list(state: Path) -> None:
    result = run(state, "--list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == len(ANALYZERS)
    rows = [ln.split(None, 2) for ln in lines]
    assert ["IST0101", "ReferencedResourceNotFound", "credentialName Secrets exist"] in rows
    assert ["EG0108", "CertificateExpiry", "Secret certificates are valid now and for 30 more days"] in rows


def test_unknown_output(state: Path) -> None:
    result = run(state, "-f", str(EXAMPLES), "-o", "table")
    assert result.exit_code == 1 and "unknown output format" in result.output


CASES = Path(__file__).parent / "analyze_cases"


def _client_secret_yaml(namespace: str, not_after: datetime) -> str:
    """`kubectl create secret generic client-credential --from-file=tls.key=... --from-file=tls.crt=...
    --from-file=ca.crt=...` as YAML, with a self-signed EC certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.example.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(not_after - timedelta(days=400)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    data = {"tls.crt": cert_pem, "tls.key": key_pem, "ca.crt": cert_pem}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "client-credential", "namespace": namespace}, "type": "Opaque",
                           "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}, sort_keys=False)


def mutual_files(tmp_path: Path, secret_namespace: str, not_after: datetime) -> list[str]:
    dr = yaml.safe_load((CASES / "istio-001-mutual.istio-system.yaml").read_text())
    dr["metadata"]["namespace"] = "istio-system"  # the doc applies it with -n istio-system
    write(tmp_path / "dr.yaml", yaml.safe_dump(dr, sort_keys=False))
    write(tmp_path / "secret.yaml", _client_secret_yaml(secret_namespace, not_after))
    return ["-f", str(CASES / "istio-001-mutual.yaml"), "-f", str(tmp_path / "dr.yaml"),
            "-f", str(tmp_path / "secret.yaml"), "--mesh", str(CASES / "istio-001.mesh.yaml")]


def test_mutual_origination_secret_in_the_gateway_namespace(state: Path, tmp_path: Path) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=365)
    result = run(state, *mutual_files(tmp_path, "istio-system", later))
    assert result.exit_code == 0, result.output
    assert istio_ca_warnings_only(result.output), result.output


def test_mutual_origination_secret_in_the_wrong_namespace(state: Path, tmp_path: Path) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=365)
    result = run(state, *mutual_files(tmp_path, "default", later), "-o", "json")
    assert result.exit_code == 1
    items = [i for i in json.loads(result.output) if i["code"] not in ("IST0128", "IST0129")]
    assert [(i["code"], i["resource"], i["field"]) for i in items] == [
        ("EG0103", "DestinationRule istio-system/originate-mtls-for-nginx",
         "spec.trafficPolicy.portLevelSettings[0].tls.credentialName")]
    assert items[0]["file"] == str(tmp_path / "dr.yaml")
    assert (tmp_path / "dr.yaml").read_text().splitlines()[items[0]["line"] - 1].strip().startswith("credentialName:")


def test_certificate_expiring_soon_is_a_warning(state: Path, tmp_path: Path) -> None:
    soon = datetime.now(timezone.utc) + timedelta(days=10)
    result = run(state, *mutual_files(tmp_path, "istio-system", soon))
    assert result.exit_code == 0, result.output
    assert "Warning [EG0108] (Secret istio-system/client-credential " in result.output
