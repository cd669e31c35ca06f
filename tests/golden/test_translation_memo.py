"""The translation memo (``translate.memo``) never changes what is translated: every golden
case, translated again after each of its resources is taken away and put back, with one memo
carried through all of it (as the control plane carries it from push to push), gives exactly
what a translation without a memo gives. The resources keep their spec objects throughout, as
the store keeps them for unchanged documents, so the memo is really used."""

from __future__ import annotations

from pathlib import Path

import pytest

from exitgate.api.loader import load_paths
from exitgate.api.resources import Resource
from exitgate.envoy.snapshot import ProtoMemo, xds_resources
from exitgate.mesh import MeshConfig, load_mesh
from exitgate.translate.gateway import translate_gateway
from exitgate.translate.memo import TranslationMemo
from exitgate.translate.sidecar import translate_sidecar
from exitgate.translate.snapshot import Snapshot
from tests.golden.test_translation_golden import CASES, GOLDEN_NETNS, SIDECAR_PORT, render_ir


def _translate(resources: list[Resource], mesh: MeshConfig, memo: TranslationMemo | None) -> list[str]:
    snap = Snapshot(resources, mesh, memo)
    out = [translate_sidecar(snap, mesh.workloads[0], SIDECAR_PORT)[0], translate_gateway(snap, mesh.gateways[0])[0],
           translate_sidecar(snap, mesh.workloads[0], SIDECAR_PORT, capture_netns=GOLDEN_NETNS)[0]]
    return [render_ir(pc) for pc in out]


@pytest.mark.parametrize("case", sorted(CASES.glob("*.in.yaml")), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_a_memo_carried_across_pushes_changes_nothing(case: Path) -> None:
    loaded = load_paths([case])
    mesh_file = case.with_name(case.name.replace(".in.yaml", ".mesh.yaml"))
    mesh, _ = load_mesh(mesh_file if mesh_file.exists() else None)
    assert loaded.ok and mesh is not None
    resources = list(loaded.resources)
    memo, protos = TranslationMemo(), ProtoMemo()
    # All, then each one left out, then all again: every push against the memo of the last.
    pushes = [resources, *([r for r in resources if r is not left] for left in resources), resources]
    used = 0
    for i, push in enumerate(pushes):
        got = _translate(push, mesh, memo)
        assert got == _translate(push, mesh, None), f"push {i} of {case.name} differs with the memo"
        # The proto memo sees the same IR objects again: what it serves must be the same too.
        snap = Snapshot(push, mesh, memo)
        pc = translate_gateway(snap, mesh.gateways[0])[0]
        assert xds_resources(pc, {}, protos) == xds_resources(pc, {}, None)
        used += len(memo)
        memo.next_push()
        protos.next_push()
    if any(r.kind in ("ServiceEntry", "VirtualService") for r in resources):
        assert used > 0
