"""Golden tests: each ``cases/<case>.in.yaml`` translated for the default sidecar (``sleep``) and
the default egress gateway, compared at two layers: the IR (``cases/<case>.<role>.ir.yaml``, what
translate/ decided, in domain terms) and the Envoy resources as served (``cases/<case>.<role>.yaml``).

A case may bring its own mesh file, ``cases/<case>.mesh.yaml``. The cases in ``CAPTURED`` are
also translated for the sidecar of a captured workload (role ``sidecar-captured``: Istio's
``virtualOutbound``, the captured ports' listeners and the DNS proxy).

Regenerate with ``pytest tests/golden --update-golden`` and review the diff like code.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml

from exitgate.api.loader import load_paths
from exitgate.envoy.snapshot import static_bootstrap
from exitgate.ir import ProxyConfig
from exitgate.mesh import MeshConfig, load_mesh
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot

CASES = Path(__file__).parent / "cases"
SIDECAR_PORT = 15001
CAPTURED = ("egress-gateway-https", "plain-http-through-gateway", "sidecar-scope", "sidecar-tls-origination-target-port",
            "tcp-services", "tcp-through-gateway", "wildcard-hosts", "wildcard-passthrough")
GOLDEN_NETNS = "/run/netns/eg-golden-sleep.default"


def translate(case: Path, role: str) -> tuple[ProxyConfig, MeshConfig]:
    loaded = load_paths([case])
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    mesh_file = case.with_name(case.name.replace(".in.yaml", ".mesh.yaml"))
    mesh, mesh_diags = load_mesh(mesh_file if mesh_file.exists() else None)
    assert mesh is not None, [str(d) for d in mesh_diags]
    snap = Snapshot(loaded.resources, mesh)
    if role == "sidecar":
        pc, diags = translate_sidecar(snap, mesh.workloads[0], SIDECAR_PORT)
    elif role == "sidecar-captured":
        pc, diags = translate_sidecar(snap, mesh.workloads[0], SIDECAR_PORT, capture_netns=GOLDEN_NETNS)
    else:
        pc, diags = translate_gateway(snap, mesh.gateways[0])
    assert not [d for d in diags if d.is_error], [str(d) for d in diags]
    return pc, mesh


def render(pc: ProxyConfig) -> str:
    doc = static_bootstrap(pc, {})
    doc["secret_names"] = list(pc.secret_names)
    return yaml.safe_dump(doc, sort_keys=True, width=120)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if is_dataclass(value) and not isinstance(value, type):
        # The IR's class names say what each node is (RBAC matchers especially).
        return {"_": type(value).__name__, **{f.name: _plain(getattr(value, f.name)) for f in fields(value)
                                                if getattr(value, f.name) not in (None, (), False)}}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def render_ir(pc: ProxyConfig) -> str:
    return yaml.safe_dump(_plain(pc), sort_keys=False, width=120)


def case_roles() -> list[tuple[Path, str]]:
    out = []
    for case in sorted(CASES.glob("*.in.yaml")):
        name = case.name.removesuffix(".in.yaml")
        out += [(case, role) for role in ("sidecar", "gateway", "sidecar-captured")
                if role != "sidecar-captured" or name in CAPTURED]
    return out


@pytest.mark.parametrize("layer", ["envoy", "ir"])
@pytest.mark.parametrize(("case", "role"), case_roles(),
                         ids=lambda v: v.name.removesuffix(".in.yaml") if isinstance(v, Path) else v)
def test_golden(case: Path, role: str, layer: str, update_golden: bool) -> None:
    pc, _ = translate(case, role)
    suffix = f".{role}.yaml" if layer == "envoy" else f".{role}.ir.yaml"
    golden = case.with_name(case.name.replace(".in.yaml", suffix))
    got = render(pc) if layer == "envoy" else render_ir(pc)
    if update_golden or not golden.exists():
        golden.write_text(got)
        if not update_golden:
            pytest.fail(f"{golden.name} did not exist; written, review it")
    assert got == golden.read_text(), f"translation changed; review and run with --update-golden: {golden}"
