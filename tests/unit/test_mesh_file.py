"""The mesh file's mistakes are reported as a resource's are: a code, the line and the field."""

from __future__ import annotations

from pathlib import Path

from exitgate.mesh import load_mesh


def test_unknown_field_is_eg0004_at_its_line(tmp_path: Path) -> None:
    f = tmp_path / "mesh.yaml"
    f.write_text("trustDomain: cluster.local\ngateways:\n- name: gw\n  adress: 127.0.0.1\n")
    config, diags = load_mesh(f)
    assert config is None
    assert [(d.code, d.line, d.field) for d in diags] == [("EG0004", 4, "gateways[0].adress")]
    assert "unknown field 'adress'" in diags[0].message


def test_invalid_values_are_eg0005_in_line_order(tmp_path: Path) -> None:
    f = tmp_path / "mesh.yaml"
    f.write_text("accessLogEncoding: JSON\naccessLogFormat: 'nope'\nmonitoringPort: 99999\n")
    config, diags = load_mesh(f)
    assert config is None
    assert [(d.code, d.line, d.field) for d in diags] == [("EG0005", 2, "accessLogFormat"), ("EG0005", 3, "monitoringPort")]
